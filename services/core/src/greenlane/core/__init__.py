"""Shared core of GreenLane: settings, telemetry, logging, events and client helpers."""
