{{- /*
Shared named templates of every qframe chart (the contract in charts/README.md).

This file is the single source: `python -m tools.chartkit` copies it verbatim to
charts/<chart>/templates/_common.tpl, and tests/charts/test_chart_sources.py fails when a copy
differs. Edit it here, never in a chart. Chart-specific helpers live in each chart's _helpers.tpl.

Templates that need the release take the root context; those that describe one part of the
release take a dict: (dict "context" $ "component" "<role>").
*/ -}}

{{/*
qframe.name
  The chart's short name: .Values.nameOverride or the chart name, cut to 63 characters (the limit
  of a label value). Used as the app.kubernetes.io/name label. Call with the root context.
*/}}
{{- define "qframe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
qframe.fullnameMaxLength
  How long the object-name prefix may be: the chart's Chart.yaml annotation
  "qframe.io/fullname-max-length", which is 63 minus the chart's longest object-name suffix (the
  same number bounds fullnameOverride in its values.schema.json). Call with the root context.
*/}}
{{- define "qframe.fullnameMaxLength" -}}
{{- $annotations := .Chart.Annotations | default dict -}}
{{- $max := index $annotations "qframe.io/fullname-max-length" -}}
{{- if not $max -}}
{{- fail (printf "Chart.yaml of %s needs the annotation qframe.io/fullname-max-length (see charts/README.md)" .Chart.Name) -}}
{{- end -}}
{{- $max -}}
{{- end -}}

{{/*
qframe.fullname
  Prefix of every object name and the name of the chart's main Service (clients connect to
  "<fullname>.<namespace>.svc"). .Values.fullnameOverride wins; otherwise the release name when it
  already contains the chart name, else "<release>-<name>". Cut to qframe.fullnameMaxLength so the
  longest suffix still fits in 63 characters. Call with the root context.
*/}}
{{- define "qframe.fullname" -}}
{{- $max := int (include "qframe.fullnameMaxLength" .) -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc $max | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "qframe.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc $max | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc $max | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
qframe.chart
  "<chart>-<version>" for the helm.sh/chart label ("+" is not allowed in label values). Call with
  the root context.
*/}}
{{- define "qframe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
qframe.selectorLabels
  The labels that identify this release's objects and never change between upgrades (selectors
  are immutable): app.kubernetes.io/name and app.kubernetes.io/instance, plus
  app.kubernetes.io/component when "component" is given (so a server and its hook Job are told
  apart). Call with (dict "context" $ ["component" "<role>"]).
*/}}
{{- define "qframe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qframe.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/*
qframe.labels
  Every object's labels: name and instance, the recommended app.kubernetes.io/* labels, the chart
  label, .Values.commonLabels (which cannot override the standard ones) and, when "component" is
  given, app.kubernetes.io/component. Call with (dict "context" $ ["component" "<role>"]).
*/}}
{{- define "qframe.labels" -}}
{{- $ctx := .context -}}
{{ include "qframe.selectorLabels" (dict "context" $ctx) }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: qframe-research
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
helm.sh/chart: {{ include "qframe.chart" $ctx }}
{{- range $key, $value := omit $ctx.Values.commonLabels "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/managed-by" "app.kubernetes.io/version" "app.kubernetes.io/component" "app.kubernetes.io/part-of" "helm.sh/chart" }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/*
qframe.image
  An image reference from an image block {repository, tag, digest, pullPolicy}:
  "<repository>@<digest>" when a digest is set (it wins over the tag), else "<repository>:<tag>".
  Fails when both are empty. Call with (dict "image" .Values.<block> "path" "<values path>"); the
  path names the block in the error.
*/}}
{{- define "qframe.image" -}}
{{- $image := .image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else if $image.tag -}}
{{- printf "%s:%s" $image.repository $image.tag -}}
{{- else -}}
{{- fail (printf "%s: both %s.tag and %s.digest are empty; pin the image with one of them" .path .path .path) -}}
{{- end -}}
{{- end -}}

{{/*
qframe.resources
  A container's resources {requests, limits} with every quantity rendered as a string, so an
  unquoted number in values stays a valid quantity. Call with the resources map.
*/}}
{{- define "qframe.resources" -}}
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
qframe.quantities
  A flat map of quantities (a LimitRange's default, a ResourceQuota's hard) with every value
  rendered as a string. Call with the map.
*/}}
{{- define "qframe.quantities" -}}
{{- $quantities := dict -}}
{{- range $key, $value := . -}}
{{- $_ := set $quantities $key (toString $value) -}}
{{- end -}}
{{- toYaml $quantities -}}
{{- end -}}

{{/*
qframe.podSecurityContext
  The pod securityContext of every workload and hook Job: the non-root UID/GID and fsGroup from
  .Values.podSecurityContext, fsGroup applied only on mismatch, seccomp RuntimeDefault. Call with
  .Values.podSecurityContext.
*/}}
{{- define "qframe.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
fsGroup: {{ .fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
qframe.containerSecurityContext
  Every container's securityContext, deliberately not configurable: non-root, no privilege
  escalation, no capabilities, read-only root filesystem (writable paths are volumes), seccomp
  RuntimeDefault. Call with the root context.
*/}}
{{- define "qframe.containerSecurityContext" -}}
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
qframe.checksum
  The sha256 of another template of the chart as rendered for this release, for a
  "checksum/<name>" pod annotation: pods roll when the config they mount changes. Call with
  (dict "context" $ "template" "/<file>.yaml").
*/}}
{{- define "qframe.checksum" -}}
{{- include (print .context.Template.BasePath .template) .context | sha256sum -}}
{{- end -}}

{{/*
qframe.initJob.annotations
  The hook annotations of a chart's initJob: it runs after every install and upgrade, at weight 0,
  and the previous run's Job is deleted just before the next one is created (its logs stay
  readable until then; ttlSecondsAfterFinished removes it otherwise). Call with the root context.
*/}}
{{- define "qframe.initJob.annotations" -}}
helm.sh/hook: post-install,post-upgrade
helm.sh/hook-weight: "0"
helm.sh/hook-delete-policy: before-hook-creation
{{- end -}}

{{/*
qframe.networkPolicy.defaultDeny
  A NetworkPolicy "<fullname>-default-deny" selecting every pod of the namespace with no ingress
  and no egress. The same policy as charts/tenant-baseline's: a second copy changes nothing where
  the baseline exists and keeps a chart locked down where it does not. Call with
  (dict "context" $ "component" "<role>").
*/}}
{{- define "qframe.networkPolicy.defaultDeny" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "qframe.fullname" .context }}-default-deny
  namespace: {{ .context.Release.Namespace }}
  labels:
    {{- include "qframe.labels" . | nindent 4 }}
spec:
  podSelector: {}
  policyTypes:
    - Ingress
    - Egress
{{- end -}}

{{/*
qframe.networkPolicy.clientPeers
  NetworkPolicy peers (items of an ingress rule's "from") for .Values.networkPolicy.allowedClients:
  each entry is passed through as written, a podSelector and optionally a namespaceSelector, both
  in the Kubernetes LabelSelector shape ({matchLabels: {...}}). Call with the allowedClients list.
*/}}
{{- define "qframe.networkPolicy.clientPeers" -}}
{{- $peers := list -}}
{{- range . -}}
{{- $peers = append $peers (printf "- %s" (toYaml . | nindent 2 | trim)) -}}
{{- end -}}
{{- join "\n" $peers -}}
{{- end -}}

{{/*
qframe.networkPolicy.clientEgress
  Under a default-deny namespace an admitted client still cannot connect: its own egress must be
  allowed as well. For every allowedClients entry without a namespaceSelector (clients in the
  release's namespace) this renders a NetworkPolicy "<fullname>-client-egress-<index>" letting
  those pods open .ports (TCP) to the chart's pods of component .server. Clients in other
  namespaces get their egress from their own namespace (a release writes only into its own).
  Each document starts with "---". Call with
  (dict "context" $ "server" "<component>" "ports" (list <port> ...)).
*/}}
{{- define "qframe.networkPolicy.clientEgress" -}}
{{- $top := .context -}}
{{- $server := .server -}}
{{- $ports := .ports -}}
{{- range $index, $client := $top.Values.networkPolicy.allowedClients }}
{{- if not $client.namespaceSelector }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "qframe.fullname" $top }}-client-egress-{{ $index }}
  namespace: {{ $top.Release.Namespace }}
  labels:
    {{- include "qframe.labels" (dict "context" $top "component" "client-egress") | nindent 4 }}
spec:
  podSelector:
    {{- toYaml $client.podSelector | nindent 4 }}
  policyTypes:
    - Egress
  egress:
    - to:
        - podSelector:
            matchLabels:
              {{- include "qframe.selectorLabels" (dict "context" $top "component" $server) | nindent 14 }}
      ports:
        {{- range $ports }}
        - protocol: TCP
          port: {{ . }}
        {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
qframe.networkPolicy.dnsEgress
  An egress rule (an item of "egress") to the cluster DNS on UDP and TCP 53: pods labelled
  .podLabels in the namespace .namespace (matched by its kubernetes.io/metadata.name label). Call
  with .Values.networkPolicy.dns.
*/}}
{{- define "qframe.networkPolicy.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .namespace | quote }}
      podSelector:
        matchLabels:
          {{- toYaml .podLabels | nindent 10 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}
