"""The greenlane command: dev, migrate, simulate, report, liveops, stations, plan."""
