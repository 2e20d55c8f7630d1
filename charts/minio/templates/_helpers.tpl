{{/*
minio.name
  The chart's short name: .Values.nameOverride or the chart name, cut to 63 characters (the limit
  of a label value). Used as the app.kubernetes.io/name label.
*/}}
{{- define "minio.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
minio.fullname
  Prefix of every object name and the ClusterIP Service's name (so clients connect to
  "<fullname>.<namespace>.svc"). .Values.fullnameOverride wins; otherwise the release name when it
  already contains the chart name, else "<release>-<name>". Cut to 40 characters so the longest
  suffix, "-init-buckets" plus the StatefulSet pod/PVC suffixes, still fits.
*/}}
{{- define "minio.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "minio.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
minio.chart
  "<chart>-<version>" for the helm.sh/chart label ("+" is not allowed in label values).
*/}}
{{- define "minio.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
minio.selectorLabels
  The labels that identify this release's objects and never change between upgrades (selectors are
  immutable): app.kubernetes.io/name and app.kubernetes.io/instance. Pod selectors add
  app.kubernetes.io/component so the server and the init Job are told apart.
*/}}
{{- define "minio.selectorLabels" -}}
app.kubernetes.io/name: {{ include "minio.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
minio.serverSelectorLabels
  Selector labels of the MinIO server pods (StatefulSet, Services, NetworkPolicy).
*/}}
{{- define "minio.serverSelectorLabels" -}}
{{ include "minio.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{/*
minio.initSelectorLabels
  Selector labels of the init Job's pods (admitted to the server by the NetworkPolicy).
*/}}
{{- define "minio.initSelectorLabels" -}}
{{ include "minio.selectorLabels" . }}
app.kubernetes.io/component: init-buckets
{{- end -}}

{{/*
minio.labels
  Every object's labels except app.kubernetes.io/component: the selector labels, the recommended
  app.kubernetes.io/* labels, the chart label and .Values.commonLabels (which cannot override the
  standard ones). Callers add the component label.
*/}}
{{- define "minio.labels" -}}
{{ include "minio.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: qframe-research
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "minio.chart" . }}
{{- range $key, $value := omit .Values.commonLabels "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/managed-by" "app.kubernetes.io/version" "app.kubernetes.io/component" "app.kubernetes.io/part-of" "helm.sh/chart" }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/*
minio.image
  The image reference: "<repository>@<digest>" when a digest is set, else "<repository>:<tag>".
*/}}
{{- define "minio.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/*
minio.toolsImage
  The init Job's image reference, built like minio.image from .Values.toolsImage.
*/}}
{{- define "minio.toolsImage" -}}
{{- if .Values.toolsImage.digest -}}
{{- printf "%s@%s" .Values.toolsImage.repository .Values.toolsImage.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.toolsImage.repository .Values.toolsImage.tag -}}
{{- end -}}
{{- end -}}

{{/*
minio.resources
  Renders a container resource map (requests/limits of cpu, memory, ephemeral-storage) with every
  quantity quoted, so an unquoted number in values stays a valid quantity string. Call with the
  resources map as the context.
*/}}
{{- define "minio.resources" -}}
{{- $out := dict -}}
{{- range $section, $amounts := . -}}
{{- $quantities := dict -}}
{{- range $key, $value := $amounts -}}
{{- $_ := set $quantities $key (toString $value) -}}
{{- end -}}
{{- $_ := set $out $section $quantities -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
minio.podSecurityContext
  The pod securityContext shared by the server and the init Job: non-root UID/GID from values,
  fsGroup for the data volume, seccomp RuntimeDefault.
*/}}
{{- define "minio.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
fsGroup: {{ .Values.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
minio.containerSecurityContext
  Every container's securityContext: no privilege escalation, no capabilities, read-only root
  filesystem (writable paths are emptyDirs or the data volume).
*/}}
{{- define "minio.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
minio.consumerEnvSuffix
  The stem of the environment variables holding one consumer's key pair in the init Job
  ("CONSUMER_ACCESS_KEY_<NAME>" / "CONSUMER_SECRET_KEY_<NAME>", '-' becomes '_'). Call with the
  consumer's name.
*/}}
{{- define "minio.consumerEnvSuffix" -}}
{{- . | upper | replace "-" "_" -}}
{{- end -}}
