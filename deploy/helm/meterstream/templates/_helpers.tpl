{{/* Names and labels. */}}
{{- define "meterstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "meterstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "meterstream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "meterstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include with (list $ "worker"). */}}
{{- define "meterstream.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "meterstream.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "meterstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "meterstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "meterstream.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "meterstream.tlsDir" -}}/etc/meterstream/kafka-tls{{- end -}}

{{/*
Settings every meterstream container shares: Kafka, topics, meters and the common env.
Each secret comes from an existing Secret (secretKeyRef), never from a value.
*/}}
{{- define "meterstream.commonEnv" -}}
{{- $k := .Values.kafka -}}
- name: METERSTREAM_KAFKA__BOOTSTRAP_SERVERS
  value: {{ required "kafka.bootstrapServers is required (host:port of your Kafka brokers)" $k.bootstrapServers | quote }}
- name: METERSTREAM_KAFKA__CLIENT_ID
  value: {{ $k.clientId | quote }}
- name: METERSTREAM_KAFKA__SECURITY_PROTOCOL
  value: {{ $k.securityProtocol | quote }}
{{- if hasPrefix "SASL_" $k.securityProtocol }}
- name: METERSTREAM_KAFKA__SASL_MECHANISM
  value: {{ required "kafka.sasl.mechanism is required with a SASL_* securityProtocol" $k.sasl.mechanism | quote }}
- name: METERSTREAM_KAFKA__SASL_USERNAME
  value: {{ required "kafka.sasl.username is required with a SASL_* securityProtocol" $k.sasl.username | quote }}
- name: METERSTREAM_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.passwordSecret.name is required with a SASL_* securityProtocol (an existing Secret)" $k.sasl.passwordSecret.name | quote }}
      key: {{ $k.sasl.passwordSecret.key | quote }}
{{- end }}
{{- if $k.tls.secretName }}
- name: METERSTREAM_KAFKA__SSL_CAFILE
  value: {{ printf "%s/%s" (include "meterstream.tlsDir" .) $k.tls.caKey | quote }}
{{- if $k.tls.certKey }}
- name: METERSTREAM_KAFKA__SSL_CERTFILE
  value: {{ printf "%s/%s" (include "meterstream.tlsDir" .) $k.tls.certKey | quote }}
- name: METERSTREAM_KAFKA__SSL_KEYFILE
  value: {{ printf "%s/%s" (include "meterstream.tlsDir" .) (required "kafka.tls.keyKey is required with kafka.tls.certKey" $k.tls.keyKey) | quote }}
{{- end }}
{{- if $k.tls.keyPasswordSecret.name }}
- name: METERSTREAM_KAFKA__SSL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $k.tls.keyPasswordSecret.name | quote }}
      key: {{ $k.tls.keyPasswordSecret.key | quote }}
{{- end }}
{{- end }}
- name: METERSTREAM_TOPICS__PARTITIONS
  value: {{ .Values.topics.partitions | quote }}
- name: METERSTREAM_TOPICS__REPLICATION_FACTOR
  value: {{ .Values.topics.replicationFactor | quote }}
{{- range $key, $setting := dict "events" "EVENTS" "eventsDlq" "EVENTS_DLQ" "summaries" "SUMMARIES" "summariesDlq" "SUMMARIES_DLQ" "alerts" "ALERTS" "customers" "CUSTOMERS" }}
{{- with index $.Values.topics.names $key }}
- name: METERSTREAM_TOPICS__{{ $setting }}
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- with .Values.meters }}
- name: METERSTREAM_METERS
  value: {{ toJson . | quote }}
{{- end }}
- name: METERSTREAM_WORKER__APP_ID
  value: {{ .Values.worker.appId | quote }}
- name: METERSTREAM_WORKER__WEB_HOST
  value: "0.0.0.0"
- name: METERSTREAM_WORKER__LOG_FORMAT
  value: {{ .Values.worker.logFormat | quote }}
- name: METERSTREAM_WORKER__LOG_LEVEL
  value: {{ .Values.worker.logLevel | quote }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The Kafka TLS volume and its mount; include them when kafka.tls.secretName is set. */}}
{{- define "meterstream.tlsVolume" -}}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.secretName | quote }}
    defaultMode: 0440
{{- end -}}

{{- define "meterstream.tlsMount" -}}
- name: kafka-tls
  mountPath: {{ include "meterstream.tlsDir" . }}
  readOnly: true
{{- end -}}

{{- define "meterstream.podSpecCommon" -}}
serviceAccountName: {{ include "meterstream.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
