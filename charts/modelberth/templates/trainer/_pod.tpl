{{/* The training pod spec shared by the install Job and the CronJob: train, then the promotion gate moves
champion (exit 0) or publishes the new version as challenger (exit 3, the champion stays). */}}
{{- define "modelberth.trainerPod" -}}
{{- $c := dict "ctx" . "component" "trainer" }}
{{- $v := .Values.trainer }}
{{- $g := $v.gate }}
{{- $expectations := or $g.existingConfigMap $g.expectations }}
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
        - --dataset
        - {{ $v.dataset | quote }}
        - --store
        - /models
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
        - name: MODELBERTH_STATE_DIR
          value: /tmp/modelberth
        - name: HOME
          value: /tmp
        - name: TMPDIR
          value: /tmp
        - name: MPLCONFIGDIR
          value: /tmp/matplotlib
        - name: PYTHONDONTWRITEBYTECODE
          value: "1"
        {{- include "modelberth.extraEnv" (dict "values" $v) | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: models
          mountPath: /models
        {{- if $expectations }}
        - name: gate
          mountPath: /etc/modelberth/gate
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 1Gi
    - name: models
      persistentVolumeClaim:
        claimName: {{ include "modelberth.modelPvcName" . }}
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
