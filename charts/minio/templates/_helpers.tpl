{{- /*
minio's own helpers. The shared ones (qframe.name, qframe.fullname, qframe.labels,
qframe.selectorLabels, qframe.image, qframe.resources, the security contexts, ...) are in
_common.tpl, a generated copy of charts/_shared/_common.tpl.

Components: "server" (the StatefulSet, its Services and its ingress policy) and "init-buckets"
(the init Job, its ConfigMap and its egress policy).
*/ -}}

{{/*
minio.consumerEnvSuffix
  The stem of the environment variables holding one consumer's key pair in the init Job
  ("CONSUMER_ACCESS_KEY_<NAME>" / "CONSUMER_SECRET_KEY_<NAME>", '-' becomes '_'). Call with the
  consumer's name.
*/}}
{{- define "minio.consumerEnvSuffix" -}}
{{- . | upper | replace "-" "_" -}}
{{- end -}}
