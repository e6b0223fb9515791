{{/*
Names, labels and the cross-wiring between components. Component helpers take
(dict "ctx" $ "component" "auth").
*/}}

{{- define "modelberth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-modelberth, or fullnameOverride; the release name alone when it already contains the chart name. */}}
{{- define "modelberth.basename" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* <release>-modelberth-<component>, cut to 63 characters. */}}
{{- define "modelberth.fullname" -}}
{{- printf "%s-%s" (include "modelberth.basename" .ctx | trunc 50 | trimSuffix "-") .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelberth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Immutable selector labels: name, instance, component only. */}}
{{- define "modelberth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelberth.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "modelberth.labels" -}}
{{ include "modelberth.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: modelberth
helm.sh/chart: {{ include "modelberth.chart" .ctx }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Standard metadata block: name, namespace, labels. */}}
{{- define "modelberth.metadata" -}}
name: {{ include "modelberth.fullname" . }}
namespace: {{ .ctx.Release.Namespace }}
labels:
  {{- include "modelberth.labels" . | nindent 2 }}
{{- end }}

{{/* Image reference: registry/repository:tag, or @digest when a digest is set. */}}
{{- define "modelberth.image" -}}
{{- $image := .image }}
{{- $registry := default .ctx.Values.global.imageRegistry $image.registry }}
{{- $repo := ternary (printf "%s/%s" $registry $image.repository) $image.repository (ne $registry "") }}
{{- if $image.digest }}
{{- printf "%s@%s" $repo $image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .ctx.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* In-cluster base URL of a component's Service. */}}
{{- define "modelberth.serviceUrl" -}}
{{- $values := index .ctx.Values .component }}
{{- printf "http://%s.%s.svc:%d" (include "modelberth.fullname" .) .ctx.Release.Namespace (int $values.service.port) }}
{{- end }}

{{/* The public base URL of the one ingress host: the token issuer, so tokens verify anywhere. */}}
{{- define "modelberth.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl | trimSuffix "/" }}
{{- else }}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host }}
{{- end }}
{{- end }}

{{- define "modelberth.keysetSecretName" -}}
{{- default (include "modelberth.fullname" (dict "ctx" . "component" "auth-keyset")) .Values.auth.keyset.existingSecret }}
{{- end }}

{{- define "modelberth.usersSecretName" -}}
{{- .Values.auth.users.existingSecret }}
{{- end }}

{{- define "modelberth.bootstrapSecretName" -}}
{{- default (include "modelberth.fullname" (dict "ctx" . "component" "bootstrap")) .Values.auth.bootstrap.existingSecret }}
{{- end }}

{{/* The Secret holding the UI client's secret: ui.authClient.existingSecret, else the bootstrap Secret. */}}
{{- define "modelberth.uiClientSecretName" -}}
{{- default (include "modelberth.bootstrapSecretName" .) .Values.ui.authClient.existingSecret }}
{{- end }}

{{/* True when the chart generates the UI client's secret (into its bootstrap Secret). */}}
{{- define "modelberth.generatesUiClientSecret" -}}
{{- if and .Values.ui.enabled (not .Values.ui.authClient.existingSecret) (not .Values.auth.bootstrap.existingSecret) -}}
true
{{- end }}
{{- end }}

{{/* The store location the trainer writes and inference reads: the registry's oci:// URL, else the PVC's
mount path. */}}
{{- define "modelberth.storeLocation" -}}
{{- if eq .Values.inference.model.source "registry" }}
{{- printf "oci://%s/%s" .Values.modelStore.registry .Values.modelStore.namespace }}
{{- else }}
{{- print "/models" }}
{{- end }}
{{- end }}

{{/* Environment shared by every pod that talks to the registry store. */}}
{{- define "modelberth.registryEnv" -}}
{{- with .Values.modelStore.plainHttp }}
- name: MODELBERTH_REGISTRY_PLAIN_HTTP
  value: {{ join "," . | quote }}
{{- end }}
{{- end }}

{{- define "modelberth.modelPvcName" -}}
{{- default (include "modelberth.fullname" (dict "ctx" . "component" "models")) .Values.models.persistence.existingClaim }}
{{- end }}

{{/*
Pod-level security context: restricted PSS. Takes the component's values as .values.
*/}}
{{- define "modelberth.podSecurityContext" -}}
{{- toYaml .values.podSecurityContext }}
{{- end }}

{{/* Container security context (restricted PSS + read-only root filesystem). */}}
{{- define "modelberth.securityContext" -}}
{{- toYaml .values.securityContext }}
{{- end }}

{{/* Probes for the standard /healthz and /readyz endpoints on the named port; .readyPath overrides /readyz. */}}
{{- define "modelberth.probes" -}}
{{- $p := .values.probes }}
{{- $ready := .readyPath | default "/readyz" }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml $p.liveness | nindent 2 }}
readinessProbe:
  {{- if .grpcPort }}
  # grpc.health.v1 Check of the whole server (""): SERVING exactly when GET /readyz answers 200.
  grpc:
    port: {{ .grpcPort }}
    service: ""
  {{- else }}
  httpGet:
    path: {{ $ready }}
    port: http
  {{- end }}
  {{- toYaml $p.readiness | nindent 2 }}
{{- if $p.startup.enabled }}
startupProbe:
  httpGet:
    path: {{ $ready }}
    port: http
  {{- toYaml (omit $p.startup "enabled") | nindent 2 }}
{{- end }}
{{- end }}

{{/* Graceful shutdown: keep serving while endpoints drain, then uvicorn finishes in-flight requests. */}}
{{- define "modelberth.lifecycle" -}}
lifecycle:
  preStop:
    sleep:
      seconds: {{ .values.preStopSleepSeconds }}
{{- end }}

{{/* Extra env entries: a map name -> value (strings), rendered sorted. */}}
{{- define "modelberth.extraEnv" -}}
{{- range $name, $value := .values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* Scheduling knobs shared by every pod. */}}
{{- define "modelberth.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The signing keyset as a JWKS with one private ES256 key, generated from sprig's P-256 key.
genPrivateKey "ecdsa" PEM-encodes an RFC 5915 ECPrivateKey; for P-256 its DER has fixed offsets:
d at bytes 7..39, the uncompressed point 0x04||x||y at 56..121. The JWK fields are those bytes in
base64url without padding (RFC 7518 §6.2). charts/tests checks the result signs and verifies.
*/}}
{{- define "modelberth.generateKeyset" -}}
{{- $pem := genPrivateKey "ecdsa" }}
{{- $der := regexReplaceAll "-----[A-Z ]+-----|\\s" $pem "" | b64dec }}
{{- $d := substr 7 39 $der | b64enc | replace "+" "-" | replace "/" "_" | trimSuffix "=" }}
{{- $x := substr 57 89 $der | b64enc | replace "+" "-" | replace "/" "_" | trimSuffix "=" }}
{{- $y := substr 89 121 $der | b64enc | replace "+" "-" | replace "/" "_" | trimSuffix "=" }}
{{- $kid := printf "%s-%s" (now | date "20060102") (randAlphaNum 8 | lower) }}
{{- $key := dict "kty" "EC" "crv" "P-256" "alg" "ES256" "use" "sig" "kid" $kid "d" $d "x" $x "y" $y }}
{{- dict "keys" (list $key) | toJson }}
{{- end }}

{{/*
Checksum of everything auth mounts: the generated Secrets' templates (stable across upgrades, since they
reuse the stored values) and the resourceVersion of existing Secrets (changes when their owner edits them).
*/}}
{{- define "modelberth.authSecretsChecksum" -}}
{{- $parts := list }}
{{- if .Values.auth.keyset.existingSecret }}
{{- $s := lookup "v1" "Secret" .Release.Namespace .Values.auth.keyset.existingSecret }}
{{- $parts = append $parts (dig "metadata" "resourceVersion" "" $s) }}
{{- else }}
{{- $parts = append $parts (include (print .Template.BasePath "/auth/secret-keyset.yaml") .) }}
{{- end }}
{{- if .Values.auth.users.existingSecret }}
{{- $s := lookup "v1" "Secret" .Release.Namespace .Values.auth.users.existingSecret }}
{{- $parts = append $parts (dig "metadata" "resourceVersion" "" $s) }}
{{- end }}
{{- if .Values.auth.bootstrap.existingSecret }}
{{- $s := lookup "v1" "Secret" .Release.Namespace .Values.auth.bootstrap.existingSecret }}
{{- $parts = append $parts (dig "metadata" "resourceVersion" "" $s) }}
{{- else }}
{{- $parts = append $parts (include (print .Template.BasePath "/auth/secret-bootstrap.yaml") .) }}
{{- end }}
{{- if and .Values.ui.enabled .Values.ui.authClient.existingSecret }}
{{- $parts = append $parts (include "modelberth.uiClientChecksum" .) }}
{{- end }}
{{- with .Values.auth.state }}
{{- range $name := list .existingSecret .tls.caSecret }}
{{- if and $.Values.auth.state.url $name }}
{{- $s := lookup "v1" "Secret" $.Release.Namespace $name }}
{{- $parts = append $parts (dig "metadata" "resourceVersion" "" $s) }}
{{- end }}
{{- end }}
{{- end }}
{{- join "\n" $parts | sha256sum }}
{{- end }}

{{/* Checksum of the UI client's secret source, so auth and the UI roll together when it changes. */}}
{{- define "modelberth.uiClientChecksum" -}}
{{- if .Values.ui.authClient.existingSecret }}
{{- $s := lookup "v1" "Secret" .Release.Namespace .Values.ui.authClient.existingSecret }}
{{- dig "metadata" "resourceVersion" "" $s | sha256sum }}
{{- else if .Values.auth.bootstrap.existingSecret }}
{{- $s := lookup "v1" "Secret" .Release.Namespace .Values.auth.bootstrap.existingSecret }}
{{- dig "metadata" "resourceVersion" "" $s | sha256sum }}
{{- else }}
{{- include (print .Template.BasePath "/auth/secret-bootstrap.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/* Monitoring renders only when asked for and the prometheus-operator CRDs are served (or the check is off). */}}
{{- define "modelberth.monitoringOn" -}}
{{- if and .Values.monitoring.enabled (or (not .Values.monitoring.requireCrds) (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor")) -}}
true
{{- end }}
{{- end }}

{{/* The key prefix of auth's shared state: auth.state.prefix, or one per namespace and release. */}}
{{- define "modelberth.authStatePrefix" -}}
{{- .Values.auth.state.prefix | default (printf "%s:%s:auth:" .Release.Namespace .Release.Name) }}
{{- end }}

{{/* More than one auth pod (a replica count above one, or an HPA). */}}
{{- define "modelberth.authScalesOut" -}}
{{- if or .Values.auth.autoscaling.enabled (gt (int .Values.auth.replicaCount) 1) -}}
true
{{- end }}
{{- end }}
