{{/*
kafka.name
  The chart's short name: .Values.nameOverride or the chart name, cut to 63 characters (the limit
  of a label value). Used as the app.kubernetes.io/name label.
*/}}
{{- define "kafka.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
kafka.fullname
  Prefix of every object name and the client Service's name. .Values.fullnameOverride wins;
  otherwise "<release>-<name>", or just the release name when it already contains the chart name
  (release "kafka" -> "kafka"). Cut to 40 characters so "<fullname>-bootstrap-topics" (+17) fits
  in 63 and pod names "<fullname>-<ordinal>" stay valid hostnames.
*/}}
{{- define "kafka.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kafka.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
kafka.headlessName
  The headless Service that gives every broker pod a stable DNS name
  "<fullname>-<i>.<fullname>-headless.<namespace>.svc" (used by the quorum and advertised listeners).
*/}}
{{- define "kafka.headlessName" -}}
{{- printf "%s-headless" (include "kafka.fullname" .) -}}
{{- end -}}

{{/*
kafka.chart
  "<chart>-<version>" for the helm.sh/chart label ("+" is not allowed in label values).
*/}}
{{- define "kafka.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
kafka.selectorLabels
  The labels that identify the broker pods and never change between upgrades (selectors are
  immutable): app.kubernetes.io/name and app.kubernetes.io/instance.
*/}}
{{- define "kafka.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
kafka.brokerSelectorLabels
  Selector labels of the broker pods only (the bootstrap Job's pods share name/instance but carry
  another component), used by the Services, the PodDisruptionBudget and the NetworkPolicies.
*/}}
{{- define "kafka.brokerSelectorLabels" -}}
{{ include "kafka.selectorLabels" . }}
app.kubernetes.io/component: broker
{{- end -}}

{{/*
kafka.labels
  Every object's labels: the selector labels, the recommended app.kubernetes.io/* labels, the chart
  label and .Values.commonLabels (which cannot override the standard ones). Objects of a specific
  role add app.kubernetes.io/component themselves.
*/}}
{{- define "kafka.labels" -}}
{{ include "kafka.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: qframe-research
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "kafka.chart" . }}
{{- range $key, $value := omit .Values.commonLabels "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/managed-by" "app.kubernetes.io/version" "app.kubernetes.io/component" "app.kubernetes.io/part-of" "helm.sh/chart" }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/*
kafka.image
  "<repository>:<tag>", or "<repository>@sha256:..." when the tag is a digest. Call with the image
  map (repository, tag) as the context.
*/}}
{{- define "kafka.image" -}}
{{- if hasPrefix "sha256:" .tag -}}
{{- printf "%s@%s" .repository .tag -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{/*
kafka.quorumVoters
  The static KRaft voter list "0@<fullname>-0.<headless>.<ns>.svc:9093,1@...", one entry per replica:
  every broker is also a controller, node.id is the pod ordinal.
*/}}
{{- define "kafka.quorumVoters" -}}
{{- $fullname := include "kafka.fullname" . -}}
{{- $headless := include "kafka.headlessName" . -}}
{{- $voters := list -}}
{{- range $i := until (int .Values.replicas) -}}
{{- $voters = append $voters (printf "%d@%s-%d.%s.%s.svc:9093" $i $fullname $i $headless $.Release.Namespace) -}}
{{- end -}}
{{- join "," $voters -}}
{{- end -}}

{{/*
kafka.defaultReplicationFactor
  min(3, replicas): the replication factor of internal topics and of topics that name none.
*/}}
{{- define "kafka.defaultReplicationFactor" -}}
{{- min 3 (int .Values.replicas) -}}
{{- end -}}

{{/*
kafka.minInsyncReplicas
  2 when there are at least 3 brokers (a write survives one broker loss), else 1.
*/}}
{{- define "kafka.minInsyncReplicas" -}}
{{- if ge (int .Values.replicas) 3 -}}2{{- else -}}1{{- end -}}
{{- end -}}

{{/*
kafka.clusterId
  The KRaft cluster id: .Values.clusterId (Pulumi passes a deterministic one), else the id already
  kept in the "<fullname>-cluster-id" Secret (helm lookup, so upgrades keep it), else a new one:
  21 random alphanumerics plus "A" = 22 characters of URL-safe base64 encoding 16 bytes.
*/}}
{{- define "kafka.clusterId" -}}
{{- if .Values.clusterId -}}
{{- .Values.clusterId -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (printf "%s-cluster-id" (include "kafka.fullname" .)) -}}
{{- if and $existing $existing.data (index $existing.data "clusterId") -}}
{{- index $existing.data "clusterId" | b64dec -}}
{{- else -}}
{{- printf "%sA" (randAlphaNum 21) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
kafka.resources
  Renders a container resource map with every quantity quoted, so an unquoted number in values
  stays a valid quantity string. Call with the {requests, limits} map as the context.
*/}}
{{- define "kafka.resources" -}}
{{- range $section, $amounts := . }}
{{ $section }}:
{{- range $key, $value := $amounts }}
  {{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
kafka.podSecurityContext
  Pod-level security context: non-root user/group from values, fsGroup for the data volume,
  seccomp RuntimeDefault.
*/}}
{{- define "kafka.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
kafka.containerSecurityContext
  Container-level security context: no privilege escalation, every capability dropped, read-only
  root filesystem (writable paths are volumes), seccomp RuntimeDefault.
*/}}
{{- define "kafka.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}
