{{- /*
jupyterhub's own helpers. The shared ones (qframe.name, qframe.fullname, qframe.labels,
qframe.selectorLabels, qframe.image, qframe.resources, the security contexts, ...) are in
_common.tpl, a generated copy of charts/_shared/_common.tpl.

Components: "hub" (the hub Deployment, its Service, ServiceAccount, RBAC and config), "proxy"
(configurable-http-proxy, the public Service named after the release and the API Service) and
"singleuser-server" (the users' servers that KubeSpawner creates; the chart renders only their policy; KubeSpawner sets
this component label on every user pod itself).
*/ -}}

{{/*
jupyterhub.hubName
  Name of the hub's Deployment, Service and ServiceAccount. Call with the root context.
*/}}
{{- define "jupyterhub.hubName" -}}
{{ include "qframe.fullname" . }}-hub
{{- end -}}

{{/*
jupyterhub.proxyApiName
  Name of the Service in front of the proxy's REST API (port 8001, hub only). Call with the root context.
*/}}
{{- define "jupyterhub.proxyApiName" -}}
{{ include "qframe.fullname" . }}-proxy-api
{{- end -}}

{{/*
jupyterhub.settings
  hub.json: everything jupyterhub_config.py reads that varies per release. Call with the root context.
*/}}
{{- define "jupyterhub.settings" -}}
{{- $hub := include "jupyterhub.hubName" . -}}
{{- $singleuser := .Values.singleuser -}}
{{- $labels := dict "app.kubernetes.io/name" (include "qframe.name" .) "app.kubernetes.io/instance" .Release.Name "app.kubernetes.io/component" "singleuser-server" "app.kubernetes.io/part-of" "qframe-research" "app.kubernetes.io/managed-by" "jupyterhub" -}}
{{- $settings := dict
  "namespace" .Release.Namespace
  "hub" (dict "bindUrl" "http://:8081" "connectUrl" (printf "http://%s.%s.svc:8081" $hub .Release.Namespace))
  "proxy" (dict "publicUrl" "http://:8000" "apiUrl" (printf "http://%s.%s.svc:8001" (include "jupyterhub.proxyApiName" .) .Release.Namespace))
  "auth" .Values.auth
  "cull" .Values.cull
  "metrics" .Values.metrics
  "mlflow" (dict
    "enabled" .Values.mlflow.enabled
    "url" .Values.mlflow.url
    "adminUsername" .Values.mlflow.adminUsername
    "userSecretPrefix" .Values.mlflow.userSecretPrefix
    "secretLabels" (merge (dict "app.kubernetes.io/name" (include "qframe.name" .) "app.kubernetes.io/instance" .Release.Name "app.kubernetes.io/part-of" "qframe-research" "app.kubernetes.io/managed-by" "jupyterhub") .Values.commonLabels))
  "singleuser" (dict
    "image" (include "qframe.image" (dict "image" $singleuser.image "path" "singleuser.image"))
    "pullPolicy" $singleuser.image.pullPolicy
    "uid" $singleuser.uid
    "startTimeout" $singleuser.startTimeout
    "serviceAccount" $singleuser.serviceAccount
    "serviceAccountPurpose" $singleuser.serviceAccountPurpose
    "labels" (merge (dict) $labels .Values.commonLabels)
    "podLabels" $singleuser.podLabels
    "storage" $singleuser.storage
    "env" $singleuser.env
    "secretEnv" $singleuser.secretEnv
    "profiles" $singleuser.profiles)
-}}
{{- toPrettyJson $settings -}}
{{- end -}}
