{{- /*
tenant-baseline has no helpers of its own: names, labels and quantities come from _common.tpl,
a generated copy of charts/_shared/_common.tpl. Every object is a namespace-wide policy, so they
all carry the component "namespace-baseline".
*/ -}}
