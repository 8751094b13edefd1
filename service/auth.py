"""Bearer tokens of the AI Hub API: RS256 JWTs from an OIDC provider (Keycloak's claim shape), verified
against its JWKS, each naming one tenant and the caller's roles.

Claims read: `sub`, `tenant_id`, `realm_access.roles`; `exp` is required, `aud` checked when an
audience is configured, `iss` when an issuer is. Roles: `ai_user` (features, read models),
`forecaster` (forecast, explain), `anomaly_analyst` (anomaly), `model_admin` (promote, delete).
A token may act for its own tenant only: a request naming another tenant gets 403 whatever its body says.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool

from core.errors import EmsError

ROLES = ("ai_user", "forecaster", "anomaly_analyst", "model_admin")
ALGORITHMS = ["RS256"]  # never "none", never a symmetric algorithm a public key could be abused for


class AuthError(EmsError, PermissionError):
    """A request without a valid token (401) or whose token may not do this (403)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str | None  # None: auth off (loopback only): every tenant
    roles: frozenset[str]

    def require(self, role: str, tenant: str | None = None) -> None:
        """Refuse (403) unless the token holds `role` and, when a tenant is named, acts for it."""
        if self.tenant is not None and tenant is not None and tenant != self.tenant:
            raise AuthError(f"token of tenant {self.tenant!r} may not act for tenant {tenant!r}", 403)
        if role not in self.roles:
            held = ", ".join(sorted(self.roles)) or "none"
            raise AuthError(f"token of {self.subject!r} lacks role {role!r} (has: {held})", 403)


ANONYMOUS = Principal("anonymous (auth off)", None, frozenset(ROLES))


async def principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The caller named by the bearer token (ANONYMOUS with auth off: `app.state.verifier` None). A token
    is verified in the thread pool: an unknown key id makes the verifier fetch the provider's JWKS."""
    verifier = request.app.state.verifier
    return ANONYMOUS if verifier is None else await run_in_threadpool(verifier.principal, authorization)


Caller = Annotated[Principal, Depends(principal)]


@dataclass
class TokenVerifier:
    """Verifies bearer tokens with the provider's JWKS (keys fetched once, refetched for an unknown kid)."""
    jwks_url: str
    audience: str | None = None
    issuer: str | None = None

    def __post_init__(self):
        from jwt import PyJWKClient

        self._keys = PyJWKClient(self.jwks_url, cache_keys=True, timeout=5)

    def principal(self, authorization: str | None) -> Principal:
        import jwt

        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError("missing bearer token (Authorization: Bearer <JWT>)", 401)
        token = authorization[7:].strip()
        try:
            key = self._keys.get_signing_key_from_jwt(token).key
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=self.audience, issuer=self.issuer,
                                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None})
        except jwt.PyJWKClientError as e:
            raise AuthError(f"token refused: its signing key is not in the provider's JWKS ({e})", 401) from None
        except jwt.InvalidTokenError as e:
            raise AuthError(f"token refused: {e}", 401) from None
        tenant = claims.get("tenant_id")
        if not isinstance(tenant, str) or not tenant:
            raise AuthError("token refused: it names no tenant_id", 401)
        roles = (claims.get("realm_access") or {}).get("roles") or []
        return Principal(str(claims["sub"]), tenant, frozenset(r for r in roles if r in ROLES))


def check_auth_off_allowed(host: str) -> None:
    """Auth may be off only for a service bound to loopback."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise EmsError(f"auth is off but the service would listen on {host!r}: set EMS_API_JWKS_URL "
                       "(or bind 127.0.0.1)")
