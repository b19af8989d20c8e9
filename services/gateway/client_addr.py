"""The client's address for per-client limits: the TCP peer, or behind trusted reverse
proxies the nearest X-Forwarded-For hop that is not one of them.

X-Forwarded-For is written by whoever sends the request, so it is believed only when the
peer is a configured proxy, and only from the right (the hops the proxies appended).
"""

from __future__ import annotations

import functools
import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def trusted_networks(spec: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 127.0.0.1` → networks; a malformed entry raises ValueError."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: str) -> str:
    address = peer or ""
    networks = trusted_networks(trusted)
    if not networks or not _trusted(address, networks):
        return address
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address  # garbage from a proxy we trust: fall back to that proxy
        if not _trusted(hop, networks):
            return hop
        address = hop
    return address
