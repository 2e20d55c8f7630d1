{{- /*
kafka's own helpers. The shared ones (qframe.name, qframe.fullname, qframe.labels,
qframe.selectorLabels, qframe.image, qframe.resources, the security contexts, ...) are in
_common.tpl, a generated copy of charts/_shared/_common.tpl.

Components: "broker" (the StatefulSet, its Services, config, Secret and PodDisruptionBudget),
"bootstrap-topics" (the initJob and its ConfigMap) and "network-policy" (the NetworkPolicies).
*/ -}}

{{/*
kafka.headlessName
  The headless Service that gives every broker pod a stable DNS name
  "<fullname>-<i>.<fullname>-headless.<namespace>.svc" (used by the quorum and advertised listeners).
*/}}
{{- define "kafka.headlessName" -}}
{{- printf "%s-headless" (include "qframe.fullname" .) -}}
{{- end -}}

{{/*
kafka.quorumVoters
  The static KRaft voter list "0@<fullname>-0.<headless>.<ns>.svc:9093,1@...", one entry per replica:
  every broker is also a controller, node.id is the pod ordinal.
*/}}
{{- define "kafka.quorumVoters" -}}
{{- $fullname := include "qframe.fullname" . -}}
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
{{- $existing := lookup "v1" "Secret" .Release.Namespace (printf "%s-cluster-id" (include "qframe.fullname" .)) -}}
{{- if and $existing $existing.data (index $existing.data "clusterId") -}}
{{- index $existing.data "clusterId" | b64dec -}}
{{- else -}}
{{- printf "%sA" (randAlphaNum 21) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
kafka.credentialsDir
  Where the brokers find the passwords of "broker" and "admin" (files broker-password and
  admin-password from auth.brokerSecret and auth.adminSecret), read by the DirectoryConfigProvider.
*/}}
{{- define "kafka.credentialsDir" -}}
/etc/kafka-credentials
{{- end -}}

{{/*
kafka.authJson
  What the bootstrap Job ensures besides topics: the mechanism and, per user, the topics it may
  write and read and its consumer-group prefix (passwords are files under /etc/kafka-auth/users).
*/}}
{{- define "kafka.authJson" -}}
{{- $users := list -}}
{{- range .Values.auth.users -}}
{{- $users = append $users (dict "name" .name "write" (default (list) .write) "read" (default (list) .read) "groupPrefix" (default "" .groupPrefix)) -}}
{{- end -}}
{{- toJson (dict "mechanism" .Values.auth.mechanism "users" $users) -}}
{{- end -}}

{{/*
kafka.tlsDir
  Where the brokers and the bootstrap Job find tls.crt, tls.key and ca.crt of tls.existingSecret.
*/}}
{{- define "kafka.tlsDir" -}}
/etc/kafka-tls
{{- end -}}

{{/*
kafka.clientProtocol
  The security protocol of the client (and inter-broker) listener: SASL_SSL with tls.existingSecret.
*/}}
{{- define "kafka.clientProtocol" -}}
{{- if .Values.tls.existingSecret -}}SASL_SSL{{- else -}}SASL_PLAINTEXT{{- end -}}
{{- end -}}
