{{/*
tenant-baseline.name
  The chart's short name: .Values.nameOverride or the chart name, cut to 63 characters (the limit
  of a label value). Used as the app.kubernetes.io/name label.
*/}}
{{- define "tenant-baseline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
tenant-baseline.fullname
  Prefix of every object name. .Values.fullnameOverride wins; otherwise "<release>-<name>", or just
  the release name when it already contains the chart name. Cut to 42 characters so the longest
  suffix, "-allow-same-namespace" (21), still fits in a 63-character object name.
*/}}
{{- define "tenant-baseline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "tenant-baseline.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 42 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
tenant-baseline.chart
  "<chart>-<version>" for the helm.sh/chart label ("+" is not allowed in label values).
*/}}
{{- define "tenant-baseline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
tenant-baseline.selectorLabels
  The labels that identify this release's objects and never change between upgrades (selectors are
  immutable): app.kubernetes.io/name and app.kubernetes.io/instance.
*/}}
{{- define "tenant-baseline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tenant-baseline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
tenant-baseline.labels
  Every object's labels: the selector labels, the recommended app.kubernetes.io/* labels, the chart
  label and .Values.commonLabels (which cannot override the standard ones).
*/}}
{{- define "tenant-baseline.labels" -}}
{{ include "tenant-baseline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: namespace-baseline
app.kubernetes.io/part-of: qframe-research
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "tenant-baseline.chart" . }}
{{- range $key, $value := omit .Values.commonLabels "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/managed-by" "app.kubernetes.io/version" "app.kubernetes.io/component" "app.kubernetes.io/part-of" "helm.sh/chart" }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/*
tenant-baseline.resources
  Renders a container resource map (cpu, memory, ephemeral-storage) with every value quoted, so an
  unquoted number in values stays a valid quantity string. Call with the map as the context.
*/}}
{{- define "tenant-baseline.resources" -}}
{{- $quantities := dict -}}
{{- range $key, $value := . -}}
{{- $_ := set $quantities $key (toString $value) -}}
{{- end -}}
{{- toYaml $quantities -}}
{{- end -}}
