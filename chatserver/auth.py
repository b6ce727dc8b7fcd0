"""Who is calling: signed expiring tokens (PyJWT, HS256) and password hashing (Argon2id).

A Principal is what every handler authorises against; nothing else carries identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from chatserver.protocol import ErrorCode, ProtocolError

_hasher = PasswordHasher()
_ISSUER = "chatserver"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: str
    name: str
    customer_id: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in ("advisor", "supervisor", "admin")

    @property
    def can_read_all(self) -> bool:
        return self.role in ("supervisor", "admin")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class TokenSigner:
    """Issues and checks login tokens with the hub's secret."""

    def __init__(self, secret: str, ttl_s: int):
        self._secret = secret
        self._ttl_s = ttl_s

    def issue(self, principal: Principal, now: float) -> str:
        claims = {
            "iss": _ISSUER,
            "sub": principal.user_id,
            "role": principal.role,
            "name": principal.name,
            "cus": principal.customer_id,
            "iat": int(now),
            "exp": int(now) + self._ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str, now: float) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise ProtocolError(ErrorCode.AUTH_FAILED, f"invalid token: {exc}") from None
        # Expiry is checked against the clock we were given, so tests need no sleeping.
        if claims["exp"] <= now:
            raise ProtocolError(ErrorCode.AUTH_FAILED, "token expired; log in again")
        role = claims.get("role")
        if role not in ("investor", "advisor", "supervisor", "admin"):
            raise ProtocolError(ErrorCode.AUTH_FAILED, "token has no valid role")
        return Principal(
            user_id=str(claims["sub"]), role=role, name=str(claims.get("name") or ""),
            customer_id=claims.get("cus"),
        )
