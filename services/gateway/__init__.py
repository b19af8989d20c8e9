"""The HTTP gateway: Open WebUI's API over aiohttp, talking to services only over NATS."""
