"""GreenLane planner: one joint charging plan per site, solved as an LP with HiGHS."""
