{{/* Names, labels and the hardening every pod of this sub-chart shares. */}}

{{/* RELEASE-<piece>: (list ROOT "prometheus"). The umbrella chart derives the same names. */}}
{{- define "observability.name" -}}
{{- printf "%s-%s" (index . 0).Release.Name (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "observability.selectorLabels" -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "observability.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version }}
{{ include "observability.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: greenlane
{{- end -}}

{{/* Service annotations the chart's Prometheus (and annotation-based ones) scrape by. */}}
{{- define "observability.scrape" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: {{ .path | default "/metrics" }}
{{- end -}}

{{/* The pod securityContext: (dict "uid" N "gid" N). */}}
{{- define "observability.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .gid }}
fsGroup: {{ .gid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "observability.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "observability.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{- define "observability.tmp" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "observability.databaseHost" -}}
{{- default (printf "%s-timescale" .Release.Name) .Values.database.host -}}
{{- end -}}

{{- define "observability.databaseSecret" -}}
{{- default (printf "%s-timescale" .Release.Name) .Values.database.existingSecret -}}
{{- end -}}

{{/* Grafana's admin password: the one in the cluster (upgrades keep it), else a new one. */}}
{{- define "observability.grafanaPassword" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "observability.name" (list . "grafana")) -}}
{{- if and $existing $existing.data (hasKey $existing.data "admin-password") -}}
{{- index $existing.data "admin-password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 24 -}}
{{- end -}}
{{- end -}}

{{/* A NetworkPolicy peer: pods of one piece of this release. */}}
{{- define "observability.peer" -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
      app.kubernetes.io/name: {{ index . 1 }}
{{- end -}}
