{{/* The training pod spec shared by the install Job and the CronJob: train, then the promotion gate moves
champion (exit 0) or publishes the new version as challenger (exit 3, the champion stays). */}}
{{- define "modelberth.trainerPod" -}}
{{- $c := dict "ctx" . "component" "trainer" }}
{{- $v := .Values.trainer }}
{{- $g := $v.gate }}
{{- $d := $v.data }}
{{- $expectations := or $g.existingConfigMap $g.expectations }}
{{- $registry := eq .Values.inference.model.source "registry" }}
{{- $ms := .Values.modelStore }}
{{- $pushSecret := $ms.pushSecret | default $ms.pullSecret }}
metadata:
  labels:
    {{- include "modelberth.labels" $c | nindent 4 }}
  {{- with $v.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "modelberth.fullname" $c }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  restartPolicy: Never
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  {{- include "modelberth.scheduling" (dict "ctx" . "values" $v) | nindent 2 }}
  containers:
    - name: trainer
      image: {{ include "modelberth.image" (dict "ctx" . "image" $v.image) }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command: ["modelberth", "train"]
      args:
        {{- if $d.pvc.claimName }}
        - --data
        - {{ printf "/data/%s" $d.pvc.path | quote }}
        {{- else if not (or $d.url $d.urlSecret.name) }}
        - --dataset
        - {{ $d.dataset | quote }}
        {{- end }}
        {{- if $d.sha256 }}
        - --data-sha256
        - {{ $d.sha256 | quote }}
        {{- end }}
        {{- if $d.target }}
        - --target
        - {{ $d.target | quote }}
        {{- end }}
        {{- if $v.name }}
        - --name
        - {{ $v.name | quote }}
        {{- end }}
        - --store
        - {{ include "modelberth.storeLocation" . | quote }}
        {{- if and $registry $ms.artifactOnly }}
        - --artifact-only
        {{- end }}
        - --gate-tolerance
        - {{ $g.tolerance | quote }}
        {{- if $g.allowLeaks }}
        - --allow-leaks
        {{- end }}
        {{- if $g.disabled }}
        - --no-gate
        {{- end }}
        {{- if $expectations }}
        - --expectations
        - /etc/modelberth/gate/expectations.yaml
        {{- end }}
        {{- range $v.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        # The image sets MODELBERTH_STATE_DIR, MPLCONFIGDIR and caches under /tmp; HOME moves there too
        # because the root filesystem is read-only here.
        - name: HOME
          value: /tmp
        - name: TMPDIR
          value: /tmp
        {{- if $d.urlSecret.name }}
        # The URL comes from a Secret (a presigned URL is a credential); it is never printed.
        - name: TRAINER_DATA_URL
          valueFrom:
            secretKeyRef:
              name: {{ $d.urlSecret.name }}
              key: {{ $d.urlSecret.key }}
        {{- else if $d.url }}
        - name: TRAINER_DATA_URL
          value: {{ $d.url | quote }}
        {{- end }}
        {{- if $registry }}
        {{- include "modelberth.registryEnv" . | nindent 8 }}
        - name: MODELBERTH_REGISTRY_CACHE
          value: /tmp/registry-cache
        {{- if $pushSecret }}
        - name: DOCKER_CONFIG
          value: /etc/modelberth/registry
        {{- end }}
        {{- end }}
        {{- include "modelberth.extraEnv" (dict "values" $v) | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if not $registry }}
        - name: models
          mountPath: /models
        {{- end }}
        {{- if $d.pvc.claimName }}
        - name: data
          mountPath: /data
          readOnly: true
        {{- end }}
        {{- if and $registry $pushSecret }}
        - name: registry-auth
          mountPath: /etc/modelberth/registry
          readOnly: true
        {{- end }}
        {{- if $expectations }}
        - name: gate
          mountPath: /etc/modelberth/gate
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 1Gi
    {{- if not $registry }}
    - name: models
      persistentVolumeClaim:
        claimName: {{ include "modelberth.modelPvcName" . }}
    {{- end }}
    {{- if $d.pvc.claimName }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ $d.pvc.claimName }}
        readOnly: true
    {{- end }}
    {{- if and $registry $pushSecret }}
    - name: registry-auth
      secret:
        secretName: {{ $pushSecret }}
        items:
          - key: .dockerconfigjson
            path: config.json
    {{- end }}
    {{- if $expectations }}
    - name: gate
      configMap:
        name: {{ $g.existingConfigMap | default (printf "%s-gate" (include "modelberth.fullname" $c) | trunc 63 | trimSuffix "-") }}
        items:
          - key: expectations.yaml
            path: expectations.yaml
    {{- end }}
{{- end }}

{{/* The Job spec fields shared by the install Job and the CronJob's jobTemplate. Exit 2 (bad input) and
3 (the gate refused the new version) are answers, not accidents: the Job fails at once, without retries;
an evicted or preempted pod does not count against backoffLimit. */}}
{{- define "modelberth.trainerJobSpec" -}}
backoffLimit: {{ .Values.trainer.backoffLimit }}
activeDeadlineSeconds: {{ .Values.trainer.activeDeadlineSeconds }}
podFailurePolicy:
  rules:
    - action: FailJob
      onExitCodes:
        containerName: trainer
        operator: In
        values: [2, 3]
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
{{- end }}
