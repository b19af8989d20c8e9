"""Starts the embedded stack as real processes: nats-server, llama-server, the services."""
