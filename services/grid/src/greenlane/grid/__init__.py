"""GreenLane grid service: the time-of-use electricity tariff over HTTP."""
