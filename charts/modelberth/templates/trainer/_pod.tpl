{{/* The training pod spec shared by the install Job and the CronJob. */}}
{{- define "modelberth.trainerPod" -}}
{{- $c := dict "ctx" . "component" "trainer" }}
{{- $v := .Values.trainer }}
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
        - --out
        - /models
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
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 1Gi
    - name: models
      persistentVolumeClaim:
        claimName: {{ include "modelberth.modelPvcName" . }}
{{- end }}
