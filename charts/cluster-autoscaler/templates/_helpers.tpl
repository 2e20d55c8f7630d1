{{- /*
cluster-autoscaler's own helpers. The shared ones (qframe.name, qframe.fullname, qframe.labels,
qframe.image, the security contexts, the NetworkPolicy parts, ...) are in _common.tpl, a generated
copy of charts/_shared/_common.tpl.

Component: "autoscaler" (every object of the release).
*/ -}}

{{/*
cluster-autoscaler.clusterRoleName
  ClusterRole and ClusterRoleBinding are cluster-wide: the namespace is part of the name, so two
  stacks' releases in two namespaces never share (or delete) each other's.
*/}}
{{- define "cluster-autoscaler.clusterRoleName" -}}
{{- printf "%s-%s" .Release.Namespace (include "qframe.fullname" .) -}}
{{- end -}}

{{/*
cluster-autoscaler.statusConfigMap
  The ConfigMap the autoscaler writes its status to; named after the release so the Role can grant
  exactly this one by resourceNames.
*/}}
{{- define "cluster-autoscaler.statusConfigMap" -}}
{{- printf "%s-status" (include "qframe.fullname" .) -}}
{{- end -}}

{{/*
cluster-autoscaler.args
  The command line. Auto-discovery finds every Auto Scaling group that carries both tag keys (their
  values do not matter to discovery; the IAM policy's condition checks "owned"), so only this
  cluster's groups are ever touched.
*/}}
{{- define "cluster-autoscaler.args" -}}
{{- $a := .Values.autoscaling -}}
- --cloud-provider=aws
- --node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/{{ .Values.aws.clusterName }}
- --namespace={{ .Release.Namespace }}
- --leader-elect-resource-name={{ include "qframe.fullname" . }}
- --status-config-map-name={{ include "cluster-autoscaler.statusConfigMap" . }}
- --address=:{{ .Values.metrics.port }}
- --expander={{ $a.expander }}
- --balance-similar-node-groups={{ $a.balanceSimilarNodeGroups }}
{{- range $a.balancingIgnoreLabels }}
- --balancing-ignore-label={{ . }}
{{- end }}
- --skip-nodes-with-local-storage={{ $a.skipNodesWithLocalStorage }}
- --skip-nodes-with-system-pods={{ $a.skipNodesWithSystemPods }}
- --scale-down-enabled={{ $a.scaleDown.enabled }}
- --scale-down-delay-after-add={{ $a.scaleDown.delayAfterAdd }}
- --scale-down-unneeded-time={{ $a.scaleDown.unneededTime }}
- --scale-down-utilization-threshold={{ $a.scaleDown.utilizationThreshold }}
- --max-node-provision-time={{ $a.maxNodeProvisionTime }}
- --scan-interval={{ $a.scanInterval }}
- --v={{ .Values.logLevel }}
{{- end -}}
