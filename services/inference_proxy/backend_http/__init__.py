"""A lean HTTP/1.1 client for every request of the proxy to the model backends.

aiohttp's client was a third of the proxy's CPU per streamed chat: a StreamReader with
a future per read, ~26 `data_received`/`feed_data`/`resume_reading` calls per stream, the
ClientResponse and timer machinery. The proxy needs much less: one request (a chat POST,
an Ollama pass-through of any method, a model list GET), the status and headers parsed
once, then body bytes handed on as they arrive. So this client keeps its own pool and an
`asyncio.Protocol` per connection (`pool`), and lets llhttp, through httptools, frame
the bytes (`response`). Its policies: proxies from the environment (`proxies`), no
retry of a non-idempotent request (`pool`), Content-Encoding decoded or refused
(`encodings`), obs-fold tolerated (`response`).
"""

from inference_proxy.backend_http.errors import (
    BackendConnectError,
    BackendDisconnected,
    BackendHTTPError,
    BackendProtocolError,
)
from inference_proxy.backend_http.pool import IDEMPOTENT_METHODS, BackendPool
from inference_proxy.backend_http.proxies import proxies_from_env
from inference_proxy.backend_http.response import HIGH_WATER_BYTES, BackendResponse

__all__ = [
    "HIGH_WATER_BYTES",
    "IDEMPOTENT_METHODS",
    "BackendConnectError",
    "BackendDisconnected",
    "BackendHTTPError",
    "BackendPool",
    "BackendProtocolError",
    "BackendResponse",
    "proxies_from_env",
]
