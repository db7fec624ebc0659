"""Names on the wire that clients, services and the chart share: each written once, here."""

from __future__ import annotations

from typing import Final

# gRPC metadata key (and HTTP header) carrying a client's token.
TOKEN_METADATA_KEY: Final = "x-api-token"
# Trailing gRPC metadata: milliseconds to wait before trying again (limits, draining).
RETRY_AFTER_KEY: Final = "retry-after-ms"
# The Kafka topic every fleet event goes to (key = car id); GREENLANE_FLEET_EVENTS_TOPIC.
FLEET_EVENTS_TOPIC: Final = "fleet-events"
# The span of one car status: the client's (kind CLIENT) and ingestion's (kind SERVER);
# its context travels in CarStatus.trace_context (docs/observability.md).
STATUS_SPAN: Final = "car status"
