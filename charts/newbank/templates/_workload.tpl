{{/*
The ServiceAccount, Deployment, Service and PodDisruptionBudget of one NewBank service.
Called from the service's own template file: (dict "root" $ "name" "accounts" "svc" .Values.accounts
"managed" false). The four services run the same image and differ only by their values block. A
Deployment the operator scales ("managed") gets no spec.replicas, so `helm upgrade` does not undo it.
*/}}
{{- define "newbank.workload" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := .svc -}}
{{- $full := printf "%s-%s" (include "newbank.fullname" $root) $name -}}
{{- $base := include "newbank.fullname" $root -}}
{{- $port := int $root.Values.servicePort -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $full }}
  labels:
    {{- include "newbank.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $name }}
automountServiceAccountToken: false
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $full }}
  labels:
    {{- include "newbank.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $name }}
spec:
  {{- if not .managed }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "newbank.selectorLabels" (dict "root" $root "component" $name) | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "newbank.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ $name }}
    spec:
      serviceAccountName: {{ $full }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ add $root.Values.gracefulShutdownSeconds 10 }}
      containers:
        - name: {{ $name }}
          image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          # As the local runtime runs them (newbank.runtime.instances), where the load-test figures come
          # from: no access log (the ingress logs requests; a line per request costs the pod's CPU),
          # and a graceful shutdown that ends before the kubelet's SIGKILL.
          args: ["uvicorn", "newbank.{{ $name }}.main:app", "--host", "0.0.0.0", "--port", "{{ $port }}", "--no-server-header",
                 "--no-access-log", "--timeout-graceful-shutdown", "{{ $root.Values.gracefulShutdownSeconds }}"]
          ports:
            - name: http
              containerPort: {{ $port }}
              protocol: TCP
          env:
            - name: NEWBANK_SERVICE
              value: {{ $name }}
            - name: NEWBANK_INSTANCE_ID
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: NEWBANK_ACCOUNTS_INTERNAL_URL
              value: "http://{{ $base }}-accounts:{{ $port }}"
            - name: NEWBANK_ADMIN_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ $root.Values.existingSecret }}
                  key: admin-token
            {{- if $root.Values.postgres.cloudnativepg.enabled }}
            {{- $cluster := printf "%s-%s" $base $svc.context }}
            - name: NEWBANK_DB_USER
              valueFrom:
                secretKeyRef:
                  name: {{ $cluster }}-app
                  key: username
            - name: NEWBANK_DB_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ $cluster }}-app
                  key: password
            - name: NEWBANK_DATABASE_URL
              value: "postgresql://$(NEWBANK_DB_USER):$(NEWBANK_DB_PASSWORD)@{{ $cluster }}-rw:5432/{{ $svc.context }}"
            - name: NEWBANK_DATABASE_REPLICA_URL
              value: "postgresql://$(NEWBANK_DB_USER):$(NEWBANK_DB_PASSWORD)@{{ $cluster }}-ro:5432/{{ $svc.context }}"
            {{- else }}
            - name: NEWBANK_DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: {{ $root.Values.existingSecret }}
                  key: {{ $svc.context }}-database-url
            - name: NEWBANK_DATABASE_REPLICA_URL
              valueFrom:
                secretKeyRef:
                  name: {{ $root.Values.existingSecret }}
                  key: {{ $svc.context }}-database-replica-url
                  optional: true
            {{- end }}
            {{- if $root.Values.rabbitmq.cluster.enabled }}
            - name: NEWBANK_AMQP_USER
              valueFrom:
                secretKeyRef:
                  name: {{ $base }}-rabbitmq-default-user
                  key: username
            - name: NEWBANK_AMQP_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ $base }}-rabbitmq-default-user
                  key: password
            - name: NEWBANK_AMQP_URL
              value: "amqp://$(NEWBANK_AMQP_USER):$(NEWBANK_AMQP_PASSWORD)@{{ $base }}-rabbitmq:5672/"
            {{- else }}
            - name: NEWBANK_AMQP_URL
              valueFrom:
                secretKeyRef:
                  name: {{ $root.Values.existingSecret }}
                  key: amqp-url
            {{- end }}
            - name: PYTHONDONTWRITEBYTECODE
              value: "1"
            {{- with concat (default (list) $root.Values.extraEnv) (default (list) $svc.extraEnv) }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $full }}
  labels:
    {{- include "newbank.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $name }}
spec:
  type: ClusterIP
  selector:
    {{- include "newbank.selectorLabels" (dict "root" $root "component" $name) | nindent 4 }}
  ports:
    - name: http
      port: {{ $port }}
      targetPort: http
      protocol: TCP
---
{{- if and ($root.Capabilities.APIVersions.Has "policy/v1") (semverCompare ">=1.21-0" $root.Capabilities.KubeVersion.Version) }}
apiVersion: policy/v1
{{- else }}
apiVersion: policy/v1beta1
{{- end }}
kind: PodDisruptionBudget
metadata:
  name: {{ $full }}
  labels:
    {{- include "newbank.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $name }}
spec:
  minAvailable: {{ $svc.pdb.minAvailable }}
  selector:
    matchLabels:
      {{- include "newbank.selectorLabels" (dict "root" $root "component" $name) | nindent 6 }}
{{- end -}}
