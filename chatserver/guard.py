"""Abuse limits at the door: origin check, token-bucket rate limits, login lockout, ban lists.

All limits are per process; each takes the clock as an argument so tests need no sleeping.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field

from aiohttp import web

from chatserver.auth import Principal
from chatserver.protocol import CloseCode, ErrorCode, ProtocolError
from chatserver.settings import Settings

# Documented defaults (docs/security.md): a browser or advisor never comes near these.
FRAMES_PER_S = 20.0
FRAME_BURST = 40.0
REFUSALS_BEFORE_CLOSE = 20
LOGIN_FAILURES_BEFORE_LOCK = 5
LOGIN_LOCK_S = 300.0
IP_REQUESTS_PER_S = 50.0
IP_BURST = 200.0
# Frames from one address across all its sockets: generous, since a branch office shares one
# NAT address, but it stops one address opening many sockets to multiply the per-socket budget.
IP_FRAMES_PER_S = 200.0
IP_FRAME_BURST = 400.0
MAX_TRACKED_ADDRESSES = 100_000
# The names of the black/white lists, as the admin API and the bus notices carry them.
ACCESS_LISTS = ("banned_users", "banned_networks", "allowed_networks")


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0
    refused: int = 0

    def allow(self, now: float, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            self.refused = 0
            return True
        self.refused += 1
        return False

    def should_close(self) -> bool:
        return self.refused >= REFUSALS_BEFORE_CLOSE


@dataclass(slots=True)
class FrameLimiter:
    """One socket's budget and its address's shared budget; refusals by either count to the close."""

    own: TokenBucket
    shared: TokenBucket

    def allow(self, now: float) -> bool:
        if not self.own.allow(now):
            return False
        if not self.shared.allow(now):
            self.own.refused += 1
            return False
        return True

    def should_close(self) -> bool:
        return self.own.should_close()


@dataclass(slots=True)
class _LoginRecord:
    failures: int = 0
    locked_until: float = 0.0


@dataclass(slots=True)
class Guard:
    settings: Settings
    banned_users: set[str] = field(default_factory=set)
    banned_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(
        default_factory=list
    )
    allowed_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(
        default_factory=list
    )
    _logins: OrderedDict[str, _LoginRecord] = field(default_factory=OrderedDict)
    # The limits in force; the module constants are the documented defaults.
    ip_rate: float = IP_REQUESTS_PER_S
    ip_burst: float = IP_BURST
    frame_rate: float = FRAMES_PER_S
    frame_burst: float = FRAME_BURST
    ip_frame_rate: float = IP_FRAMES_PER_S
    ip_frame_burst: float = IP_FRAME_BURST
    _ip_buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)
    _ip_frame_buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def frame_limiter(self, remote: str | None = None) -> FrameLimiter:
        shared = _bucket(self._ip_frame_buckets, remote, self.ip_frame_rate, self.ip_frame_burst)
        return FrameLimiter(TokenBucket(self.frame_rate, self.frame_burst), shared)

    def refuse_socket(self, request: web.Request, now: float) -> tuple[int, bytes] | None:
        """Why a WebSocket upgrade is refused before its auth frame (close code, reason), or None."""
        if not self.origin_allowed(request):
            return CloseCode.FORBIDDEN, b"origin not allowed"
        if not self.address_allowed(request.remote):
            return CloseCode.FORBIDDEN, b"address not allowed"
        if not self.ip_allows(request.remote, now):
            return CloseCode.RATE_LIMITED, b"too many connections from your address"
        return None

    def connection_cap_reached(self, open_for_user: int) -> bool:
        """True when a user already holds max_connections_per_user sockets on this process."""
        return open_for_user >= self.settings.max_connections_per_user

    def origin_allowed(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser (CLI client, gateway): tokens still guard it
        allowed = {o.strip() for o in self.settings.allowed_origins.split(",") if o.strip()}
        if allowed:
            return origin in allowed
        host = request.headers.get("Host", "")
        return origin in (f"http://{host}", f"https://{host}")

    def address_allowed(self, remote: str | None) -> bool:
        if not remote:
            return True
        try:
            ip = ipaddress.ip_address(remote)
        except ValueError:
            return True
        if self.allowed_networks and not any(ip in n for n in self.allowed_networks):
            return False
        return not any(ip in n for n in self.banned_networks)

    def ip_allows(self, remote: str | None, now: float) -> bool:
        return _bucket(self._ip_buckets, remote, self.ip_rate, self.ip_burst).allow(now)

    async def check_user(self, principal: Principal) -> None:
        if principal.user_id in self.banned_users:
            raise ProtocolError(ErrorCode.FORBIDDEN, "this account is blocked")

    def login_locked(self, username: str, now: float) -> bool:
        record = self._logins.get(username)
        return record is not None and record.locked_until > now

    def login_failed(self, username: str, now: float) -> None:
        record = self._logins.setdefault(username, _LoginRecord())
        record.failures += 1
        if record.failures >= LOGIN_FAILURES_BEFORE_LOCK:
            record.locked_until, record.failures = now + LOGIN_LOCK_S, 0
        if len(self._logins) > 100_000:
            self._logins.popitem(last=False)

    def login_succeeded(self, username: str) -> None:
        self._logins.pop(username, None)

    def set_lists(
        self, banned_users: list[str], banned_networks: list[str], allowed_networks: list[str]
    ) -> None:
        """Replace the lists; raises ValueError naming the first bad network."""
        self.banned_networks = [ipaddress.ip_network(n, strict=False) for n in banned_networks]
        self.allowed_networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        self.banned_users = set(banned_users)

    def lists(self) -> dict[str, list[str]]:
        return {
            "banned_users": sorted(self.banned_users),
            "banned_networks": [str(n) for n in self.banned_networks],
            "allowed_networks": [str(n) for n in self.allowed_networks],
        }


def _bucket(
    buckets: OrderedDict[str, TokenBucket], remote: str | None, rate: float, burst: float
) -> TokenBucket:
    """The address's bucket; the oldest address is forgotten first so memory stays bounded."""
    key = _address_key(remote)
    bucket = buckets.get(key)
    if bucket is None:
        bucket = buckets[key] = TokenBucket(rate, burst)
        if len(buckets) > MAX_TRACKED_ADDRESSES:
            buckets.popitem(last=False)
    bucket.rate, bucket.burst = rate, burst  # limits changed at run time apply at once
    return bucket


def _address_key(remote: str | None) -> str:
    """An IPv6 client usually owns a whole /64, so it is one address for rate limits."""
    if not remote:
        return "?"
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if ip.version == 6 and not ip.ipv4_mapped:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)
