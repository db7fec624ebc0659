{{/* The name of every object of this chart; the umbrella chart derives the same name. */}}
{{- define "timescale.fullname" -}}
{{- default (printf "%s-timescale" .Release.Name) .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "timescale.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "timescale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: greenlane
{{- end -}}

{{- define "timescale.selectorLabels" -}}
app.kubernetes.io/name: timescale
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: database
{{- end -}}

{{- define "timescale.secretName" -}}
{{- default (include "timescale.fullname" .) .Values.auth.existingSecret -}}
{{- end -}}

{{/* The password: the one already in the cluster (upgrades keep it), else a new random one. */}}
{{- define "timescale.password" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "timescale.fullname" .) -}}
{{- $key := .Values.auth.existingSecretPasswordKey -}}
{{- if and $existing $existing.data (hasKey $existing.data $key) -}}
{{- index $existing.data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}

{{- define "timescale.pgIsReady" -}}
exec:
  command:
    - pg_isready
    - --host=127.0.0.1
    - --username={{ .Values.auth.username }}
    - --dbname={{ .Values.auth.database }}
{{- end -}}
