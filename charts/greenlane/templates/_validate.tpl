{{/*
Checks that the schema cannot express. Every mistake is collected first and
reported in one failure, so a user fixes them all in one round.
*/}}
{{- define "greenlane.validateValues" -}}
{{- $errors := list -}}
{{- $v := .Values -}}
{{- $components := include "greenlane.components" . | fromJson -}}
{{- $enabled := dict -}}
{{- range $name, $c := $components -}}
{{- if $c.enabled -}}{{- $_ := set $enabled $name true -}}{{- end -}}
{{- end -}}
{{- $needsDatabase := or (hasKey $enabled "pricing-worker") $v.migrations.enabled -}}

{{- /* Backends: a bundled sub-chart or an external endpoint. */ -}}
{{- if and (not $v.redis.enabled) (not $v.externalRedis.host) (hasKey $enabled "ingestion") -}}
{{- $errors = append $errors "redis.enabled=false needs externalRedis.host (ingestion writes car positions to Redis)" -}}
{{- end -}}
{{- if and (not $v.redis.enabled) (not $v.externalRedis.host) (hasKey $enabled "hub") -}}
{{- $errors = append $errors "redis.enabled=false needs externalRedis.host (the hub reads the stations from Redis)" -}}
{{- end -}}
{{- if and (not $v.redis.enabled) (not $v.externalRedis.host) (hasKey $enabled "planner") -}}
{{- $errors = append $errors "redis.enabled=false needs externalRedis.host (the planner keeps plans and goals in Redis)" -}}
{{- end -}}
{{- if and (not $v.redpanda.enabled) (not $v.externalKafka.bootstrapServers) (or (hasKey $enabled "ingestion") (hasKey $enabled "pricing-worker") (hasKey $enabled "hub") (hasKey $enabled "planner")) -}}
{{- $errors = append $errors "redpanda.enabled=false needs externalKafka.bootstrapServers (host:port[,host:port])" -}}
{{- end -}}
{{- if $v.externalKafka.bootstrapServers -}}
{{- range (splitList "," $v.externalKafka.bootstrapServers) -}}
{{- if not (regexMatch "^[A-Za-z0-9.-]+:[0-9]{1,5}$" (trim .)) -}}
{{- $errors = append $errors (printf "externalKafka.bootstrapServers: %q is not host:port" (trim .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (not $v.timescale.enabled) $needsDatabase -}}
{{- if not $v.externalDatabase.host -}}
{{- $errors = append $errors "timescale.enabled=false needs externalDatabase.host (the pricing worker and the migrations use it)" -}}
{{- end -}}
{{- if not $v.externalDatabase.existingSecret -}}
{{- $errors = append $errors "timescale.enabled=false needs externalDatabase.existingSecret, a Secret holding the database password (never in values)" -}}
{{- end -}}
{{- end -}}

{{- /* API tokens (the schema refuses short ones): the services refuse the development token. */ -}}
{{- if and $v.auth.existingSecret $v.auth.apiTokens -}}
{{- $errors = append $errors "set auth.existingSecret or auth.apiTokens, not both" -}}
{{- end -}}
{{- range $i, $token := $v.auth.apiTokens -}}
{{- if eq $token "greenlane-secret-token" -}}
{{- $errors = append $errors (printf "auth.apiTokens[%d] is the development token, refused outside development" $i) -}}
{{- end -}}
{{- if contains "," $token -}}
{{- $errors = append $errors (printf "auth.apiTokens[%d] contains a comma, the separator of GREENLANE_API_TOKENS" $i) -}}
{{- end -}}
{{- end -}}

{{- if and $v.auth.existingSecret $v.auth.credentials -}}
{{- $errors = append $errors "set auth.existingSecret or auth.credentials, not both (put the credentials in the Secret)" -}}
{{- end -}}
{{- range $i, $c := $v.auth.credentials -}}
{{- if eq $c.token "greenlane-secret-token" -}}
{{- $errors = append $errors (printf "auth.credentials[%d].token is the development token, refused outside development" $i) -}}
{{- end -}}
{{- end -}}

{{- /* TLS: a certificate from somewhere. */ -}}
{{- if and $v.tls.enabled (not $v.tls.existingSecret) (not $v.tls.certManager.enabled) -}}
{{- $errors = append $errors "tls.enabled needs tls.existingSecret (a kubernetes.io/tls Secret) or tls.certManager.enabled" -}}
{{- end -}}
{{- if and $v.tls.certManager.enabled (not $v.tls.certManager.issuerRef.name) -}}
{{- $errors = append $errors "tls.certManager.enabled needs tls.certManager.issuerRef.name" -}}
{{- end -}}
{{- if and $v.tls.certManager.enabled $v.tls.existingSecret -}}
{{- $errors = append $errors "set tls.existingSecret or tls.certManager.enabled, not both" -}}
{{- end -}}

{{- /* Secrets never go through config.extraEnv: it lands in a ConfigMap. */ -}}
{{- range $name, $_ := $v.config.extraEnv -}}
{{- if regexMatch "(?i)(TOKEN|PASSWORD|SECRET|CREDENTIAL|PRIVATE_KEY|DATABASE_URL|REDIS_URL)" $name -}}
{{- $errors = append $errors (printf "config.extraEnv.%s looks like a secret: it would be stored in a ConfigMap; use a Secret (auth.*, external*.existingSecret)" $name) -}}
{{- end -}}
{{- end -}}
{{- range $cname, $c := $components -}}
{{- range $name, $_ := $c.env -}}
{{- if regexMatch "(?i)(TOKEN|PASSWORD|SECRET|CREDENTIAL|PRIVATE_KEY|DATABASE_URL|REDIS_URL)" $name -}}
{{- $errors = append $errors (printf "components.%s.env.%s looks like a secret: it would be written into the pod spec; use connections and a Secret" $cname $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Components. */ -}}
{{- range $client := list "pricing-worker" "planner" -}}
{{- if and (hasKey $enabled $client) (not (hasKey $enabled "grid")) (not $v.config.gridUrl) -}}
{{- $errors = append $errors (printf "components.%s needs the grid component or config.gridUrl" $client) -}}
{{- end -}}
{{- end -}}
{{- range $name, $c := $components -}}
{{- if and $c.enabled (not $c.image.repository) -}}
{{- $errors = append $errors (printf "components.%s.image.repository is empty: name the component's image (greenlane-%s)" $name $name) -}}
{{- end -}}
{{- if and $c.enabled (not $c.ports) -}}
{{- $errors = append $errors (printf "components.%s.ports is empty: a component needs at least its metrics port" $name) -}}
{{- end -}}
{{- if and $c.enabled $c.autoscaling.enabled (gt (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas)) -}}
{{- $errors = append $errors (printf "components.%s.autoscaling.minReplicas (%v) is above maxReplicas (%v)" $name $c.autoscaling.minReplicas $c.autoscaling.maxReplicas) -}}
{{- end -}}
{{- if not (hasKey $c.ports $c.metricsPort) -}}
{{- $errors = append $errors (printf "components.%s.metricsPort %q is not one of its ports (%s)" $name $c.metricsPort (keys $c.ports | sortAlpha | join ", ")) -}}
{{- end -}}
{{- range $c.networkPolicy.allowFrom -}}
{{- if not (hasKey $components .) -}}
{{- $errors = append $errors (printf "components.%s.networkPolicy.allowFrom: %q is not a component" $name .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey $enabled "pricing-worker") (gt (int (index $components "pricing-worker").replicaCount) (int $v.config.fleetEventsPartitions)) -}}
{{- $errors = append $errors (printf "components.pricing-worker.replicaCount (%v) is above config.fleetEventsPartitions (%v): the extra workers would get no partition" (index $components "pricing-worker").replicaCount $v.config.fleetEventsPartitions) -}}
{{- end -}}
{{- if and (hasKey $enabled "hub") (has "database" $components.hub.connections) (not $v.timescale.enabled) (not $v.externalDatabase.host) -}}
{{- $errors = append $errors "components.hub.connections has database (energy and cost today) but there is no database: set timescale.enabled or externalDatabase.host, or drop database from the hub's connections" -}}
{{- end -}}
{{- if and $v.operator.enabled (not (hasKey $enabled "ingestion")) -}}
{{- $errors = append $errors "operator.enabled needs components.ingestion: its simulator Jobs stream to it" -}}
{{- end -}}

{{- /* The bundled observability stack reads the bundled backends unless told otherwise. */ -}}
{{- $obs := $v.observability -}}
{{- if $obs.enabled -}}
{{- $exporter := $obs.redisExporter | default dict -}}
{{- if and (not $v.redis.enabled) (ternary $exporter.enabled true (hasKey $exporter "enabled")) (not $exporter.address) -}}
{{- $errors = append $errors "observability.enabled with redis.enabled=false needs observability.redisExporter.address (or observability.redisExporter.enabled=false)" -}}
{{- end -}}
{{- if and (not $v.timescale.enabled) (not (($obs.database) | default dict).host) -}}
{{- $errors = append $errors "observability.enabled with timescale.enabled=false needs observability.database.host and observability.database.existingSecret" -}}
{{- end -}}
{{- end -}}

{{- if $errors -}}
{{- fail (printf "\n\nThe values of the greenlane chart have %d problem(s):\n  - %s\n" (len $errors) (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
