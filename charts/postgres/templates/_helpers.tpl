{{- /*
postgres's own helpers. The shared ones (qframe.name, qframe.fullname, qframe.labels,
qframe.selectorLabels, qframe.image, qframe.resources, the security contexts, ...) are in
_common.tpl, a generated copy of charts/_shared/_common.tpl.

Components: "database" (the StatefulSet, its Services, its config and its ingress policy) and
"init-databases" (the init Job, its ConfigMap and its egress policy).
*/ -}}

{{/*
postgres.consumerPasswordFile
  Where the init Job finds one consumer's password: the key `password` of the consumer's Secret,
  mounted at /etc/init-databases/secrets/consumers/<name>/password. Call with the consumer's name.
*/}}
{{- define "postgres.consumerPasswordFile" -}}
{{- printf "/etc/init-databases/secrets/consumers/%s/password" . -}}
{{- end -}}
