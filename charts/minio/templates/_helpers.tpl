{{- /*
minio's own helpers. The shared ones (qframe.name, qframe.fullname, qframe.labels,
qframe.selectorLabels, qframe.image, qframe.resources, the security contexts, ...) are in
_common.tpl, a generated copy of charts/_shared/_common.tpl.

Components: "server" (the StatefulSet, its Services and its ingress policy) and "init-buckets"
(the init Job, its ConfigMap and its egress policy).
*/ -}}
