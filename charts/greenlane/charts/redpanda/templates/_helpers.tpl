{{/* The name of every object of this chart; the umbrella chart derives the same name. */}}
{{- define "redpanda.fullname" -}}
{{- default (printf "%s-redpanda" .Release.Name) .Values.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- end -}}

{{- define "redpanda.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: greenlane
{{- end -}}

{{- define "redpanda.selectorLabels" -}}
app.kubernetes.io/name: redpanda
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end -}}

{{- define "redpanda.console.selectorLabels" -}}
app.kubernetes.io/name: redpanda-console
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: console
{{- end -}}

{{/* The address clients are told to use: the Service, which always reaches the single broker. */}}
{{- define "redpanda.advertisedHost" -}}
{{- printf "%s.%s.svc" (include "redpanda.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "redpanda.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}
