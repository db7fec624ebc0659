"""GreenLane hub: follows fleet-events and pushes the live fleet to WebSocket clients."""
