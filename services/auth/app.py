"""Build and run the auth service: buckets, the JWT secret, the endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from argon2 import PasswordHasher
from nats.js import JetStreamContext

from auth.groups import GroupHandlers
from auth.handlers import AuthHandlers
from auth.key_handlers import NamedKeyHandlers
from auth.named_keys import NamedKeyStore
from auth.passwords import Passwords
from auth.ratelimit import AttemptLimiter
from auth.settings import Settings
from auth.store import Buckets, UserStore
from auth.tokens import TokenIssuer, load_jwt_secret
from catalog.buckets import Bucket
from common.bus import Bus
from common.nats_conn import connect_nats
from common.service import ServiceHost
from contracts import subjects


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[None]:
    """Serve every AUTH_* subject until the context exits, then drain."""
    log = structlog.get_logger().bind(service=subjects.AUTH_SERVICE)
    async with connect_nats(settings.nats_servers(), name="ragway-auth") as nc:
        buckets = await Buckets.open(nc.jetstream(), settings.bucket_prefix, settings.kv_replicas)
        secret = await load_jwt_secret(buckets.meta, settings.jwt_secret, log)
        passwords = Passwords(
            PasswordHasher(
                time_cost=settings.password_time_cost,
                memory_cost=settings.password_memory_kib,
                parallelism=settings.password_parallelism,
            ),
            concurrency=settings.password_hash_concurrency,
        )
        await passwords.start()
        named_keys = await NamedKeyStore.open(
            nc.jetstream(), settings.bucket_prefix, settings.kv_replicas
        )
        users = UserStore(buckets)
        handlers = AuthHandlers(
            settings=settings,
            store=users,
            passwords=passwords,
            tokens=TokenIssuer(secret, settings.jwt_expires_seconds),
            limiter=await _limiter(
                nc.jetstream(), settings, "signin_failures", settings.signin_failure_window_seconds
            ),
            signups=await _limiter(
                nc.jetstream(), settings, "signup_attempts", settings.signup_window_seconds
            ),
            bus=Bus(nc),
            log=log,
            named_keys=named_keys,
        )
        key_handlers = NamedKeyHandlers(store=named_keys, users=users, bus=Bus(nc), log=log)
        async with ServiceHost(
            nc,
            subjects.AUTH_SERVICE,
            description="ragway users, sessions, API keys and groups",
            max_in_flight=settings.max_in_flight,
        ) as host:
            await handlers.serve(host)
            await GroupHandlers(buckets.groups, UserStore(buckets), Bus(nc), log).serve(host)
            await key_handlers.serve(host)
            await nc.flush()  # the server knows every endpoint before anyone is told we are up
            log.info("auth_ready", bucket_prefix=settings.bucket_prefix)
            yield None


async def _limiter(
    js: JetStreamContext, settings: Settings, name: str, window: float
) -> AttemptLimiter:
    """Attempts counted in a bucket every auth instance shares, forgotten after `window`."""
    bucket = await Bucket.open(
        js, f"{settings.bucket_prefix}_{name}", settings.kv_replicas, ttl=window
    )
    return AttemptLimiter(bucket, window)
