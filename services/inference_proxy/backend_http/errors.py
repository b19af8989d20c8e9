"""What can go wrong between the proxy and a model backend."""

from __future__ import annotations


class BackendHTTPError(Exception):
    """The backend connection failed; the subclasses say how."""


class BackendConnectError(BackendHTTPError):
    """No connection could be made (refused, unresolvable, TLS handshake failed, a proxy
    that refused the tunnel)."""


class BackendDisconnected(BackendHTTPError):
    """The connection closed before the response, or its body, was complete."""


class BackendProtocolError(BackendHTTPError):
    """The backend's bytes are not an HTTP/1.x response this client can read (malformed,
    or a Content-Encoding it cannot decode)."""
