"""Small helpers shared by every ragway service: settings, logging, errors, NATS wiring."""
