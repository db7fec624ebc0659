"""GreenLane operator: FleetSimulation resources become simulator Jobs (kopf)."""
