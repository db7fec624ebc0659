{{/*
Helpers shared by every template of the chart, the operator's included.
Names are API: templates/operator*.yaml use greenlane.fullname, greenlane.labels,
greenlane.selectorLabels, greenlane.image, greenlane.podSecurityContext,
greenlane.containerSecurityContext, greenlane.ingestionAddress,
greenlane.apiTokens.secretName and greenlane.apiTokens.secretKey.
*/}}

{{- define "greenlane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* RELEASE-greenlane, or just RELEASE when it already says greenlane. */}}
{{- define "greenlane.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "greenlane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. Call with the root context. */}}
{{- define "greenlane.labels" -}}
helm.sh/chart: {{ include "greenlane.chart" . }}
app.kubernetes.io/name: {{ include "greenlane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: greenlane
{{- end -}}

{{/* Selector labels of one component: (list ROOT "ingestion"). */}}
{{- define "greenlane.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "greenlane.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Labels of one component's objects: (list ROOT "ingestion"). */}}
{{- define "greenlane.componentLabels" -}}
{{ include "greenlane.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Name of one component's objects: (list ROOT "ingestion") -> FULLNAME-ingestion. */}}
{{- define "greenlane.componentName" -}}
{{- printf "%s-%s" (include "greenlane.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/*
An image reference: (dict "image" .Values.x.image "root" $).
greenlane-* images take the chart's appVersion unless a tag is given, and the
global registry prefix when one is set.
*/}}
{{- define "greenlane.image" -}}
{{- $root := .root -}}
{{- $repository := .image.repository -}}
{{- with $root.Values.global.imageRegistry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository -}}
{{- end -}}
{{- printf "%s:%s" $repository (default $root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* imagePullSecrets: of a pod spec, or nothing; call as {{- with include ... }}{{ . | nindent N }}{{ end }}. */}}
{{- define "greenlane.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end -}}
{{- end -}}

{{- define "greenlane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "greenlane.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "greenlane.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "greenlane.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* The writable scratch space every GreenLane pod gets (the root filesystem is read-only). */}}
{{- define "greenlane.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "greenlane.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* ---------------------------------------------------------------- components */}}

{{/*
base with over laid on top, key by key, as JSON: (dict "base" MAP "over" MAP).
Maps merge recursively; anything else in over (a list, false, 0, "") replaces the
base's value: presence decides, not emptiness (sprig's merge would let a default's
true win over a component's false).
*/}}
{{- define "greenlane.deepMerge" -}}
{{- $out := deepCopy (.base | default dict) -}}
{{- range $key, $value := .over -}}
{{- $base := index $out $key -}}
{{- if and (kindIs "map" $value) (kindIs "map" $base) -}}
{{- $_ := set $out $key (include "greenlane.deepMerge" (dict "base" $base "over" $value) | fromJson) -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
Every component as it is deployed, as JSON: each entry of .Values.components laid
over .Values.default (the otel-demo pattern). A probe or an affinity is replaced as
a whole: merging an httpGet default into a grpc probe would make a probe with two
handlers. Use: {{- $components := include "greenlane.components" . | fromJson }}
*/}}
{{- define "greenlane.components" -}}
{{- $root := . -}}
{{- $out := dict -}}
{{- range $name, $component := .Values.components -}}
{{- $base := deepCopy $root.Values.default -}}
{{- range $whole := list "startupProbe" "livenessProbe" "readinessProbe" "affinity" -}}
{{- if hasKey $component $whole -}}{{- $_ := unset $base $whole -}}{{- end -}}
{{- end -}}
{{- $_ := set $out $name (include "greenlane.deepMerge" (dict "base" $base "over" $component) | fromJson) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* One deployed component: (list ROOT "ingestion"). */}}
{{- define "greenlane.component" -}}
{{- index (include "greenlane.components" (index . 0) | fromJson) (index . 1) | toJson -}}
{{- end -}}

{{/* ---------------------------------------------------------------- backends */}}

{{- define "greenlane.redis.host" -}}
{{- if .Values.redis.enabled -}}
{{- default (printf "%s-redis" .Release.Name) .Values.redis.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- .Values.externalRedis.host -}}
{{- end -}}
{{- end -}}

{{- define "greenlane.redis.port" -}}
{{- if .Values.redis.enabled -}}
{{- ((.Values.redis.service).port) | default 6379 -}}
{{- else -}}
{{- .Values.externalRedis.port -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key of the Redis password; empty when Redis needs none. */}}
{{- define "greenlane.redis.secretName" -}}
{{- if .Values.redis.enabled -}}
{{- $auth := .Values.redis.auth | default dict -}}
{{- if (hasKey $auth "enabled" | ternary $auth.enabled true) -}}
{{- default (include "greenlane.redis.host" .) $auth.existingSecret -}}
{{- end -}}
{{- else -}}
{{- .Values.externalRedis.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The ACL user of the services ("" = the default user). */}}
{{- define "greenlane.redis.username" -}}
{{- if .Values.redis.enabled -}}
{{- $auth := .Values.redis.auth | default dict -}}
{{- if (hasKey $auth "enabled" | ternary $auth.enabled true) -}}
{{- hasKey $auth "username" | ternary $auth.username "greenlane" -}}
{{- end -}}
{{- else -}}
{{- .Values.externalRedis.username -}}
{{- end -}}
{{- end -}}

{{- define "greenlane.redis.secretKey" -}}
{{- if .Values.redis.enabled -}}
{{- ((.Values.redis.auth).existingSecretPasswordKey) | default "redis-password" -}}
{{- else -}}
{{- .Values.externalRedis.existingSecretPasswordKey -}}
{{- end -}}
{{- end -}}

{{- define "greenlane.kafka.bootstrapServers" -}}
{{- if .Values.redpanda.enabled -}}
{{- $name := default (printf "%s-redpanda" .Release.Name) .Values.redpanda.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- printf "%s:%v" $name (((.Values.redpanda.service).kafkaPort) | default 9092) -}}
{{- else -}}
{{- .Values.externalKafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{/* host, port, database, user, sslmode, secretName, secretKey of the database, as a dict. */}}
{{- define "greenlane.database" -}}
{{- if .Values.timescale.enabled -}}
{{- $ts := .Values.timescale -}}
{{- $auth := $ts.auth | default dict -}}
{{- $host := default (printf "%s-timescale" .Release.Name) $ts.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- dict "host" $host "port" (($ts.service).port | default 5432) "database" ($auth.database | default "greenlane") "user" ($auth.username | default "greenlane") "sslmode" "disable" "secretName" (default $host $auth.existingSecret) "secretKey" ($auth.existingSecretPasswordKey | default "password") | toJson -}}
{{- else -}}
{{- $db := .Values.externalDatabase -}}
{{- dict "host" $db.host "port" $db.port "database" $db.database "user" $db.user "sslmode" $db.sslmode "secretName" $db.existingSecret "secretKey" $db.existingSecretPasswordKey | toJson -}}
{{- end -}}
{{- end -}}

{{- define "greenlane.apiTokens.secretName" -}}
{{- default (printf "%s-auth" (include "greenlane.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "greenlane.apiTokens.secretKey" -}}
{{- .Values.auth.existingSecretKey -}}
{{- end -}}

{{/* The Secret holding the TLS certificate (cert-manager's, or one of the user's). */}}
{{- define "greenlane.tls.secretName" -}}
{{- default (printf "%s-tls" (include "greenlane.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "greenlane.tls.dir" -}}
/etc/greenlane/tls
{{- end -}}

{{/*
A component's probes with TLS on (dict "root" $ "probe" PROBE): an httpGet probe of a
service port asks over HTTPS (kubelet does not verify the certificate), and a native
gRPC probe, which cannot speak TLS, becomes /healthz on the metrics port.
*/}}
{{- define "greenlane.probe" -}}
{{- $probe := deepCopy .probe -}}
{{- if .root.Values.tls.enabled -}}
{{- if hasKey $probe "grpc" -}}
{{- $_ := unset $probe "grpc" -}}
{{- $_ := set $probe "httpGet" (dict "path" "/healthz" "port" "metrics") -}}
{{- else if and (hasKey $probe "httpGet") (ne (toString $probe.httpGet.port) "metrics") -}}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" -}}
{{- end -}}
{{- end -}}
{{- toYaml $probe -}}
{{- end -}}

{{/* host:port where cars, simulators and the operator's Jobs reach ingestion. */}}
{{- define "greenlane.ingestionAddress" -}}
{{- $ingestion := include "greenlane.component" (list . "ingestion") | fromJson -}}
{{- printf "%s:%v" (include "greenlane.componentName" (list . "ingestion")) $ingestion.ports.grpc.servicePort -}}
{{- end -}}

{{/* Where traces go: config.otlpEndpoint, else the bundled collector, else nowhere. */}}
{{- define "greenlane.otlpEndpoint" -}}
{{- if .Values.config.otlpEndpoint -}}
{{- .Values.config.otlpEndpoint -}}
{{- else if .Values.observability.enabled -}}
{{- printf "http://%s-otel-collector:4317" .Release.Name | trunc 63 -}}
{{- end -}}
{{- end -}}

{{/* Service annotations a Prometheus scrapes by (the bundled one, or annotation-based ones). */}}
{{- define "greenlane.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{- define "greenlane.gridUrl" -}}
{{- if .Values.config.gridUrl -}}
{{- .Values.config.gridUrl -}}
{{- else -}}
{{- $grid := include "greenlane.component" (list . "grid") | fromJson -}}
{{- printf "%s://%s:%v" (ternary "https" "http" .Values.tls.enabled) (include "greenlane.componentName" (list . "grid")) $grid.ports.http.servicePort -}}
{{- end -}}
{{- end -}}

{{/*
The secret-bearing settings, as env entries: (dict "root" $ "connections" (list "redis" ...)).
A password is read from its Secret into a variable, and the URL refers to it with
$(VAR): Kubernetes expands it, so no password appears in a manifest or a ConfigMap.
*/}}
{{- define "greenlane.connectionEnv" -}}
{{- $root := .root -}}
{{- range .connections }}
{{- if eq . "redis" }}
{{- $secret := include "greenlane.redis.secretName" $root }}
{{- $scheme := ternary "rediss" "redis" (and (not $root.Values.redis.enabled) $root.Values.externalRedis.tls) }}
{{- $db := ternary 0 $root.Values.externalRedis.database $root.Values.redis.enabled }}
{{- $hostPort := printf "%s:%v" (include "greenlane.redis.host" $root) (include "greenlane.redis.port" $root) }}
{{- if $secret }}
- name: GREENLANE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "greenlane.redis.secretKey" $root }}
- name: GREENLANE_REDIS_URL
  value: "{{ $scheme }}://{{ include "greenlane.redis.username" $root }}:$(GREENLANE_REDIS_PASSWORD)@{{ $hostPort }}/{{ $db }}"
{{- else }}
- name: GREENLANE_REDIS_URL
  value: "{{ $scheme }}://{{ $hostPort }}/{{ $db }}"
{{- end }}
{{- else if eq . "kafka" }}
- name: GREENLANE_KAFKA_BOOTSTRAP_SERVERS
  value: {{ include "greenlane.kafka.bootstrapServers" $root | quote }}
{{- else if eq . "database" }}
{{- $db := include "greenlane.database" $root | fromJson }}
- name: GREENLANE_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $db.secretName }}
      key: {{ $db.secretKey }}
- name: GREENLANE_DATABASE_URL
  value: "postgresql://{{ $db.user }}:$(GREENLANE_DATABASE_PASSWORD)@{{ $db.host }}:{{ $db.port }}/{{ $db.database }}?sslmode={{ $db.sslmode }}"
{{- else if eq . "apiTokens" }}
- name: GREENLANE_API_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ include "greenlane.apiTokens.secretName" $root }}
      key: {{ include "greenlane.apiTokens.secretKey" $root }}
- name: GREENLANE_CREDENTIALS
  valueFrom:
    secretKeyRef:
      name: {{ include "greenlane.apiTokens.secretName" $root }}
      key: {{ $root.Values.auth.existingSecretCredentialsKey }}
      optional: true
{{- else if and (eq . "tls") $root.Values.tls.enabled }}
- name: GREENLANE_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" (include "greenlane.tls.dir" $root) | quote }}
- name: GREENLANE_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" (include "greenlane.tls.dir" $root) | quote }}
{{- if $root.Values.tls.clientAuth }}
- name: GREENLANE_TLS_CLIENT_CA_FILE
  value: {{ printf "%s/ca.crt" (include "greenlane.tls.dir" $root) | quote }}
{{- end }}
# HTTP clients inside (the pricing worker's calls to the grid) trust the Secret's CA.
- name: SSL_CERT_FILE
  value: {{ printf "%s/ca.crt" (include "greenlane.tls.dir" $root) | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Who may scrape a component's metrics port, as a NetworkPolicy "from" list:
(dict "root" $ "shared" BOOL). networkPolicy.metricsFrom, plus the bundled Prometheus
when observability.enabled. With neither, a port that serves only metrics admits every
namespace (the documented default of metricsFrom: []), but a port that also serves the
component's API ("shared", the grid's http) admits no one more: an empty metricsFrom
must never open an API to the whole cluster.
*/}}
{{- define "greenlane.metricsPeers" -}}
{{- $root := .root -}}
{{- $peers := list -}}
{{- range $root.Values.networkPolicy.metricsFrom }}{{ $peers = append $peers . }}{{ end -}}
{{- if (($root.Values.observability).enabled) -}}
{{- $peers = append $peers (dict "podSelector" (dict "matchLabels" (dict "app.kubernetes.io/instance" $root.Release.Name "app.kubernetes.io/name" "prometheus"))) -}}
{{- end -}}
{{- if and (not $peers) (not .shared) -}}
{{- $peers = list (dict "namespaceSelector" (dict)) -}}
{{- end -}}
{{- with $peers }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* The pod template's checksum of the shared configuration: pods roll when it changes. */}}
{{- define "greenlane.configChecksum" -}}
{{- include (print .Template.BasePath "/config.yaml") . | sha256sum -}}
{{- end -}}
