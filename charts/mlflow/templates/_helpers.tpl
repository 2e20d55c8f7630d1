{{- /*
mlflow's own helpers. The shared ones (qframe.name, qframe.fullname, qframe.labels, qframe.image,
the security contexts, the NetworkPolicy parts, ...) are in _common.tpl, a generated copy of
charts/_shared/_common.tpl.

Component: "server" (the Deployment, its ConfigMap, Service, Ingress and policies).
*/ -}}

{{/*
mlflow.dbEnv
  The database login as environment variables, each from the backendStore Secret, and the two URIs
  assembled from them by Kubernetes' $(VAR) expansion (the password never appears in a value).
  psycopg 3 is the image's driver, hence postgresql+psycopg.
*/}}
{{- define "mlflow.dbEnv" -}}
{{- $secret := .Values.backendStore.existingSecret -}}
{{- range $env, $key := dict "MLFLOW_DB_USER" "username" "MLFLOW_DB_PASSWORD" "password" "MLFLOW_DB_HOST" "host" "MLFLOW_DB_PORT" "port" "MLFLOW_DB_NAME" "database" }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
- name: MLFLOW_DB_SSLMODE
  value: {{ .Values.backendStore.sslMode | quote }}
- name: MLFLOW_BACKEND_STORE_URI
  value: "postgresql+psycopg://$(MLFLOW_DB_USER):$(MLFLOW_DB_PASSWORD)@$(MLFLOW_DB_HOST):$(MLFLOW_DB_PORT)/$(MLFLOW_DB_NAME)?sslmode=$(MLFLOW_DB_SSLMODE)"
{{- end -}}

{{/*
mlflow.authDbEnv
  The auth app's own database login, each key from auth.database.existingSecret; read only by the
  auth-config init container, which writes the auth app's ini (in memory) from it.
*/}}
{{- define "mlflow.authDbEnv" -}}
{{- $secret := .Values.auth.database.existingSecret -}}
{{- range $env, $key := dict "AUTH_DB_USER" "username" "AUTH_DB_PASSWORD" "password" "AUTH_DB_HOST" "host" "AUTH_DB_PORT" "port" "AUTH_DB_NAME" "database" }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
- name: AUTH_DB_SSLMODE
  value: {{ .Values.backendStore.sslMode | quote }}
{{- end -}}

{{/*
mlflow.commonEnv
  What every mlflow process of the pod needs: no telemetry, no job runner (another process), HOME.
*/}}
{{- define "mlflow.commonEnv" -}}
- name: HOME
  value: /tmp
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
- name: DO_NOT_TRACK
  value: "true"
- name: MLFLOW_SERVER_ENABLE_JOB_EXECUTION
  value: "false"
{{- end -}}

{{/*
mlflow.allowedHosts
  Host headers the server accepts: the Service's DNS names (any port), the Ingress host, localhost,
  and server.extraAllowedHosts.
*/}}
{{- define "mlflow.allowedHosts" -}}
{{- $name := include "qframe.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.cluster.local" $name $ns) -}}
{{- $all := list -}}
{{- range $hosts }}{{ $all = append $all . }}{{ $all = append $all (printf "%s:*" .) }}{{ end -}}
{{- if and .Values.ingress.enabled .Values.ingress.host }}{{ $all = append $all .Values.ingress.host }}{{ $all = append $all (printf "%s:*" .Values.ingress.host) }}{{ end -}}
{{- $all = concat $all (list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*") .Values.server.extraAllowedHosts -}}
{{- join "," $all -}}
{{- end -}}
