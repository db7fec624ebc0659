"""GreenLane live ops: the fleet events, live, in the terminal."""
