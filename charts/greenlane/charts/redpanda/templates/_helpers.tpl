{{/* The name of every object of this chart; the umbrella chart derives the same name. */}}
{{- define "redpanda.fullname" -}}
{{- default (printf "%s-redpanda" .Release.Name) .Values.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels are the selector labels plus these; a template includes one of the two label
helpers, never a label helper and a selector helper together: a key written twice is
refused by kyaml-based tools (Flux, kustomize --enable-helm, Argo CD).
*/}}
{{- define "redpanda.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: greenlane
{{- end -}}

{{/* Labels of the broker's objects. */}}
{{- define "redpanda.labels" -}}
{{ include "redpanda.commonLabels" . }}
{{ include "redpanda.selectorLabels" . }}
{{- end -}}

{{/* Labels of the Console's objects. */}}
{{- define "redpanda.console.labels" -}}
{{ include "redpanda.commonLabels" . }}
{{ include "redpanda.console.selectorLabels" . }}
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
