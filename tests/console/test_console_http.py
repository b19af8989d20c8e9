"""The console's page, assets and cookie session over plain HTTP: the security rules a
browser relies on, checked without one."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.support.stack import PASSWORD, Account, Stack

CONSOLE = {"X-Ragway-Console": "1"}


async def _sign_in(
    stack: Stack, account: Account
) -> tuple[aiohttp.ClientSession, dict[str, Any], Any]:
    """A client with its own cookie jar, signed in through the console route: the
    session, the reply's body and the cookies it set."""
    jar = aiohttp.CookieJar(unsafe=True)  # unsafe: keep cookies for an IP address host
    session = aiohttp.ClientSession(cookie_jar=jar)
    async with session.post(
        stack.url + "/console/session",
        json={"email": account.email, "password": PASSWORD},
        headers=CONSOLE,
    ) as reply:
        assert reply.status == 200, await reply.text()
        return session, await reply.json(), reply.cookies


async def test_the_page_is_served_at_the_root_with_a_strict_content_security_policy(
    stack: Stack,
) -> None:
    async with stack.http.get(stack.url + "/") as reply:
        assert reply.status == 200
        assert reply.content_type == "text/html"
        page = await reply.text()
        csp = reply.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert '<script type="module" src="/console/app.js">' in page
    assert "<script>" not in page and "style=" not in page  # nothing inline
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere


async def test_assets_are_served_with_their_types_and_unknown_names_are_404(
    stack: Stack,
) -> None:
    for name, content_type in (
        ("app.js", "text/javascript"),
        ("console.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ):
        async with stack.http.get(f"{stack.url}/console/{name}") as reply:
            assert (reply.status, reply.content_type) == (200, content_type), name
            assert reply.headers["X-Content-Type-Options"] == "nosniff"
            etag = reply.headers["ETag"]
        async with stack.http.get(
            f"{stack.url}/console/{name}", headers={"If-None-Match": etag}
        ) as reply:
            assert reply.status == 304
    for name in ("missing.js", "..%2Fapp.py", "settings.py"):
        async with stack.http.get(f"{stack.url}/console/{name}") as reply:
            assert reply.status == 404, name
            assert "detail" in await reply.json()


async def test_no_asset_loads_anything_from_another_origin(stack: Stack) -> None:
    for name in ("app.js", "api.js", "dom.js", "auth.js", "chat.js", "files.js", "admin.js"):
        async with stack.http.get(f"{stack.url}/console/{name}") as reply:
            source = await reply.text()
        assert "http://" not in source and "https://" not in source, name
        assert "innerHTML" not in source and "eval(" not in source, name


async def test_console_sign_in_sets_an_http_only_strict_cookie_and_returns_no_token(
    stack: Stack, user: Account
) -> None:
    session, body, cookies = await _sign_in(stack, user)
    async with session:
        assert body["id"] == user.id and "token" not in body
        cookie = cookies["ragway_session"]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/"
        assert int(cookie["max-age"]) > 3600


async def test_the_cookie_works_only_with_the_console_header_from_the_same_origin(
    stack: Stack, user: Account
) -> None:
    session, _, _ = await _sign_in(stack, user)
    async with session:
        me = stack.url + "/api/v1/auths/"
        async with session.get(me, headers=CONSOLE) as reply:
            assert reply.status == 200
            assert (await reply.json())["id"] == user.id
        # what a form, a link or a <script src> from anywhere would send: cookie only
        async with session.get(me) as reply:
            assert reply.status == 403
            assert "X-Ragway-Console" in (await reply.json())["detail"]
        cross_site = {**CONSOLE, "Sec-Fetch-Site": "same-site"}
        async with session.get(me, headers=cross_site) as reply:
            assert reply.status == 403
        async with session.post(
            stack.url + "/api/v1/auths/api_key", headers={"Sec-Fetch-Site": "cross-site"}
        ) as reply:
            assert reply.status == 403
        async with session.get(me, headers={**CONSOLE, "Sec-Fetch-Site": "same-origin"}) as reply:
            assert reply.status == 200


async def test_a_bearer_credential_wins_over_the_cookie(
    stack: Stack, user: Account, admin: Account
) -> None:
    session, _, _ = await _sign_in(stack, user)
    async with session:
        async with session.get(
            stack.url + "/api/v1/auths/", headers={**CONSOLE, **admin.key_auth}
        ) as reply:
            assert (await reply.json())["id"] == admin.id
        async with session.get(
            stack.url + "/api/v1/auths/", headers={"Authorization": "Bearer nonsense"}
        ) as reply:
            assert reply.status == 401  # a bad bearer is not rescued by the cookie


async def test_console_session_routes_refuse_requests_without_the_header(
    stack: Stack, user: Account
) -> None:
    status, body = await stack.call(
        "POST", "/console/session", json={"email": user.email, "password": PASSWORD}
    )
    assert status == 403, body
    status, body = await stack.call(
        "POST",
        "/console/signup",
        json={"name": "X", "email": "x-csrf@example.test", "password": PASSWORD},
    )
    assert status == 403, body
    status, body = await stack.call(
        "POST",
        "/console/session",
        headers=CONSOLE,
        json={"email": user.email, "password": "wrong password"},
    )
    assert status in (400, 401, 403), body


async def test_console_sign_up_and_sign_out(stack: Stack) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.post(
            stack.url + "/console/signup",
            json={"name": "Console", "email": "console-signup@example.test", "password": PASSWORD},
            headers=CONSOLE,
        ) as reply:
            assert reply.status == 200, await reply.text()
            assert "token" not in await reply.json()
        async with session.get(stack.url + "/api/v1/auths/", headers=CONSOLE) as reply:
            assert (await reply.json())["email"] == "console-signup@example.test"
        async with session.delete(stack.url + "/console/session", headers=CONSOLE) as reply:
            assert reply.status == 200
        assert not [c for c in jar if c.key == "ragway_session" and c.value]
        async with session.get(stack.url + "/api/v1/auths/", headers=CONSOLE) as reply:
            assert reply.status == 401
