{{/*
Objects every long-running component has in the same form: ServiceAccount, Service, PodDisruptionBudget.
Each takes (dict "ctx" $ "component" NAME).
*/}}

{{- define "modelberth.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  {{- include "modelberth.metadata" . | nindent 2 }}
# No component talks to the Kubernetes API: no token in any pod.
automountServiceAccountToken: false
{{- end }}

{{- define "modelberth.service" -}}
{{- $values := index .ctx.Values .component }}
apiVersion: v1
kind: Service
metadata:
  {{- include "modelberth.metadata" . | nindent 2 }}
spec:
  type: {{ $values.service.type }}
  selector:
    {{- include "modelberth.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ $values.service.port }}
      targetPort: http
      protocol: TCP
    {{- if and (eq .component "inference") $values.grpc.enabled }}
    # gRPC is HTTP/2 without TLS: the standard appProtocol tells proxies and meshes (Gateway API, Traefik,
    # Istio) to speak h2c to it.
    - name: grpc
      port: {{ $values.grpc.port }}
      targetPort: grpc
      protocol: TCP
      appProtocol: kubernetes.io/h2c
    {{- end }}
{{- end }}

{{- define "modelberth.pdb" -}}
{{- $values := index .ctx.Values .component }}
{{- if $values.pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  {{- include "modelberth.metadata" . | nindent 2 }}
spec:
  maxUnavailable: {{ $values.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "modelberth.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* The volumes every service pod has: /tmp and the state dir on emptyDirs (root filesystem is read-only). */}}
{{- define "modelberth.baseVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
- name: state
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "modelberth.baseVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: state
  mountPath: /var/lib/modelberth
{{- end }}

{{/* Environment every service container gets. .component names the service (its env prefix).
Only what depends on the values or on this chart's volumes: what is a property of the image (listening on
0.0.0.0, PYTHONDONTWRITEBYTECODE, Gradio offline, caches in /tmp) is set once, in docker/Dockerfile. */}}
{{- define "modelberth.baseEnv" -}}
{{- $prefix := upper .component -}}
- name: {{ $prefix }}_PORT
  value: {{ (index .ctx.Values .component).service.port | quote }}
- name: {{ $prefix }}_ENVIRONMENT
  value: prod
- name: MODELBERTH_STATE_DIR
  value: /var/lib/modelberth
- name: HOME
  value: /tmp
- name: TMPDIR
  value: /tmp
{{- if not (hasKey (index .ctx.Values .component).env "FORWARDED_ALLOW_IPS") }}
# uvicorn believes X-Forwarded-For only from these proxies (the ingress controller); loopback by default.
- name: FORWARDED_ALLOW_IPS
  value: {{ join "," (default (list "127.0.0.1" "::1") .ctx.Values.ingress.forwardedAllowIps) | quote }}
{{- end }}
{{- end }}
