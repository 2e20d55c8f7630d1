{{/*
postgres.name
  The chart's short name: .Values.nameOverride or the chart name, cut to 63 characters (the limit
  of a label value). Used as the app.kubernetes.io/name label.
*/}}
{{- define "postgres.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
postgres.fullname
  Prefix of every object name and the ClusterIP Service's name (so clients connect to
  "<fullname>.<namespace>.svc"). .Values.fullnameOverride wins; otherwise the release name when it
  already contains the chart name, else "<release>-<name>". Cut to 40 characters so the longest
  suffix, "-init-databases" plus the StatefulSet pod/PVC suffixes, still fits.
*/}}
{{- define "postgres.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "postgres.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
postgres.chart
  "<chart>-<version>" for the helm.sh/chart label ("+" is not allowed in label values).
*/}}
{{- define "postgres.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
postgres.selectorLabels
  The labels that identify this release's objects and never change between upgrades (selectors are
  immutable): app.kubernetes.io/name and app.kubernetes.io/instance. Pod selectors add
  app.kubernetes.io/component so the server and the init Job are told apart.
*/}}
{{- define "postgres.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postgres.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
postgres.serverSelectorLabels
  Selector labels of the database server pods (StatefulSet, Services, NetworkPolicy).
*/}}
{{- define "postgres.serverSelectorLabels" -}}
{{ include "postgres.selectorLabels" . }}
app.kubernetes.io/component: database
{{- end -}}

{{/*
postgres.initSelectorLabels
  Selector labels of the init Job's pods (admitted to the server by the NetworkPolicy).
*/}}
{{- define "postgres.initSelectorLabels" -}}
{{ include "postgres.selectorLabels" . }}
app.kubernetes.io/component: init-databases
{{- end -}}

{{/*
postgres.labels
  Every object's labels except app.kubernetes.io/component: the selector labels, the recommended
  app.kubernetes.io/* labels, the chart label and .Values.commonLabels (which cannot override the
  standard ones). Callers add the component label.
*/}}
{{- define "postgres.labels" -}}
{{ include "postgres.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: qframe-research
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "postgres.chart" . }}
{{- range $key, $value := omit .Values.commonLabels "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/managed-by" "app.kubernetes.io/version" "app.kubernetes.io/component" "app.kubernetes.io/part-of" "helm.sh/chart" }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/*
postgres.image
  The image reference: "<repository>@<digest>" when a digest is set, else "<repository>:<tag>".
*/}}
{{- define "postgres.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/*
postgres.resources
  Renders a container resource map (requests/limits of cpu, memory, ephemeral-storage) with every
  quantity quoted, so an unquoted number in values stays a valid quantity string. Call with the
  resources map as the context.
*/}}
{{- define "postgres.resources" -}}
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
postgres.podSecurityContext
  The pod securityContext shared by the server and the init Job: non-root UID/GID from values,
  fsGroup for the data volume, seccomp RuntimeDefault.
*/}}
{{- define "postgres.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
fsGroup: {{ .Values.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
postgres.containerSecurityContext
  Every container's securityContext: no privilege escalation, no capabilities, read-only root
  filesystem (writable paths are emptyDirs or the data volume).
*/}}
{{- define "postgres.containerSecurityContext" -}}
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
postgres.consumerEnvName
  The environment variable holding one consumer's password in the init Job
  ("CONSUMER_PASSWORD_<NAME>"). Call with the consumer's name.
*/}}
{{- define "postgres.consumerEnvName" -}}
{{- printf "CONSUMER_PASSWORD_%s" (upper .) -}}
{{- end -}}
