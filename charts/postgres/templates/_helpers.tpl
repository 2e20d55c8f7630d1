{{- /*
postgres's own helpers. The shared ones (qframe.name, qframe.fullname, qframe.labels,
qframe.selectorLabels, qframe.image, qframe.resources, the security contexts, ...) are in
_common.tpl, a generated copy of charts/_shared/_common.tpl.

Components: "database" (the StatefulSet, its Services, its config and its ingress policy) and
"init-databases" (the init Job, its ConfigMap and its egress policy).
*/ -}}

{{/*
postgres.consumerEnvName
  The environment variable holding one consumer's password in the init Job
  ("CONSUMER_PASSWORD_<NAME>"). Call with the consumer's name.
*/}}
{{- define "postgres.consumerEnvName" -}}
{{- printf "CONSUMER_PASSWORD_%s" (upper .) -}}
{{- end -}}
