"""The web console's session: a JWT in an HttpOnly, SameSite=Strict cookie.

The console's scripts never see a token: `/console/session` (sign in) and
`/console/signup` set the cookie, and the middleware reads it only for requests that
carry no Authorization header. A cookie rides along with any request the browser makes,
so it is accepted only on requests that prove they come from the console's own pages:

- they carry `X-Ragway-Console: 1`: a page on another origin can send a custom header
  only after a CORS preflight, which the gateway never grants (forms, links, `<img>`
  and `<script>` tags cannot send one at all, so an uploaded file fetched by a tag gets
  no session);
- when the browser says where the request comes from (`Sec-Fetch-Site`), it must be
  `same-origin`: SameSite counts every port of a host as the same site.

API clients keep sending `Authorization`, so none of this runs on their requests.
"""

from __future__ import annotations

import time

from aiohttp import web

from common.errors import forbidden, unauthorized

COOKIE = "ragway_session"
HEADER = "X-Ragway-Console"


def require_console_request(request: web.Request) -> None:
    """403 unless the request comes from the console's own page (see the module doc)."""
    if request.headers.get(HEADER) != "1":
        raise forbidden(f"Console requests must carry the {HEADER} header")
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        raise forbidden("Console requests are accepted only from the console's own origin")


def session_credential(request: web.Request) -> str:
    """The JWT of the console's cookie, for a request without an Authorization header."""
    token = request.cookies.get(COOKIE, "")
    if not token:
        raise unauthorized("Not authenticated")
    require_console_request(request)
    return token


def set_session_cookie(
    request: web.Request, response: web.StreamResponse, token: str, expires_at: int
) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(0, expires_at - int(time.time())) if expires_at > 0 else None,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_is_https(request),
    )


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(
        COOKIE, path="/", httponly=True, samesite="Strict", secure=_is_https(request)
    )


def _is_https(request: web.Request) -> bool:
    # Behind a TLS-terminating proxy the peer speaks plain HTTP; a client that lies
    # about the scheme only gets a cookie its own browser will not send back over HTTP.
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
