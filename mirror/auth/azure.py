"""Azure Container Registry authentication: Azure AD tokens exchanged for registry tokens.

Flow (Azure/acr docs/AAD-OAuth.md):

1. an Azure AD access token for `<audience>/.default` from any azure-identity credential;
2. `POST https://<registry>/oauth2/exchange` (grant_type=access_token) -> an ACR refresh token;
3. `POST https://<registry>/oauth2/token` (grant_type=refresh_token, scope) -> an access token
   per scope set. Neither reply says when it expires: the JWT `exp` claim does.

Without a credential, `POST /oauth2/token` with grant_type=password and no refresh token gives
an anonymous pull token, for registries that allow anonymous pull.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import time
from typing import Any, Final

import aiohttp
from yarl import URL

from mirror.auth import tokens
from mirror.auth.tokens import Authenticator, Token
from mirror.errors import MirrorError, Unauthorized
from mirror.hosts import host_of, is_acr_host
from mirror.limits import DEFAULT_LIMITS, Limits
from mirror.support import jsonutil

__all__ = [
    "AZURE_CHINA",
    "AZURE_PUBLIC",
    "AZURE_US_GOVERNMENT",
    "AzureAuthenticator",
    "default_audience",
    "is_acr_host",
    "jwt_expiry",
]

#: Audiences of the national clouds (what `audience` means in the Azure SDKs).
AZURE_PUBLIC: Final = "https://containerregistry.azure.net"
AZURE_PUBLIC_ARM: Final = "https://management.azure.com"
AZURE_CHINA: Final = "https://management.chinacloudapi.cn"
AZURE_US_GOVERNMENT: Final = "https://management.usgovcloudapi.net"

_SUFFIX_AUDIENCE: Final = {
    ".azurecr.io": AZURE_PUBLIC,
    ".azurecr.cn": AZURE_CHINA,
    ".azurecr.us": AZURE_US_GOVERNMENT,
}


def default_audience(registry: str) -> str:
    """The AAD audience for a login server's cloud (public cloud when unknown)."""
    host = registry.split(":")[0].lower()
    for suffix, audience in _SUFFIX_AUDIENCE.items():
        if host.endswith(suffix):
            return audience
    return AZURE_PUBLIC


#: the API version the ACR token endpoints are asked for, as the SDKs ask
OAUTH_API_VERSION: Final = "2021-07-01"


def _versioned(url: str) -> str:
    """`url` with `api-version` in its query."""
    return str(URL(url).update_query({"api-version": OAUTH_API_VERSION}))


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim (Unix time) of a JWT, read without verifying it; None if absent."""
    try:
        payload = token.split(".")[1]
        claims = jsonutil.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def _expires_at(token: str, default_seconds: float = 60.0) -> float:
    """A monotonic deadline a little before the token's `exp`."""
    exp = jwt_expiry(token)
    lifetime = (exp - time.time()) if exp is not None else default_seconds
    return tokens.clock() + max(1.0, lifetime * 0.9 - 5)


class AzureAuthenticator(Authenticator):
    """Bearer tokens for ACR from an Azure AD credential (or anonymous)."""

    def __init__(
        self,
        registry: str,
        credential: Any,
        session: aiohttp.ClientSession,
        ssl: Any = True,
        *,
        audience: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(registry, None, session, ssl, limits=limits)
        self.credential = credential
        self.audience = (audience or default_audience(registry)).rstrip("/")
        self._acr_refresh: Token | None = None
        self._refresh_lock = asyncio.Lock()

    @property
    def aad_scope(self) -> str:
        """The scope asked of Azure AD: `<audience>/.default`."""
        return f"{self.audience}/.default"

    async def _fetch(self, scopes: frozenset[str]) -> Token:
        assert self.challenge is not None
        realm = self.checked_realm(secret=self.credential is not None)
        realm_host = URL(realm).host or ""
        if self.credential is not None and host_of(realm_host) != host_of(self.registry):
            raise Unauthorized(
                f"{self.registry} names a token realm on another host ({realm_host}): "
                "the Azure AD token goes only to the registry itself"
            )
        service = self.challenge.service or self.registry
        form = {"service": service, "scope": " ".join(sorted(scopes))}
        if self.credential is None:
            form["grant_type"] = "password"
        else:
            form["grant_type"] = "refresh_token"
            form["refresh_token"] = await self._refresh_token_for(realm, service)
        reply = await self._call("POST", _versioned(realm), data=form)
        access = reply.get("access_token")
        if not isinstance(access, str) or not access:
            raise Unauthorized(f"{self.registry}: /oauth2/token sent no access_token")
        return Token(access, _expires_at(access))

    async def _refresh_token_for(self, realm: str, service: str) -> str:
        async with self._refresh_lock:
            cached = self._acr_refresh
            if cached is not None and cached.expires_at > tokens.clock():
                return cached.value
            aad = await self._aad_token()
            exchange = _versioned(str(URL(realm).with_path("/oauth2/exchange").with_query(None)))
            reply = await self._call(
                "POST",
                exchange,
                data={"grant_type": "access_token", "service": service, "access_token": aad},
            )
            refresh = reply.get("refresh_token")
            if not isinstance(refresh, str) or not refresh:
                raise Unauthorized(f"{self.registry}: /oauth2/exchange sent no refresh_token")
            self._acr_refresh = Token(refresh, _expires_at(refresh, 3 * 3600))
            return refresh

    async def _aad_token(self) -> str:
        get_token = self.credential.get_token
        try:
            if inspect.iscoroutinefunction(get_token):
                result = await get_token(self.aad_scope)
            else:
                result = await asyncio.to_thread(get_token, self.aad_scope)
        except Exception as exc:  # azure-identity raises its own types; keep one clear line
            message = " ".join(str(exc).split())[:300]
            raise Unauthorized(f"Azure AD token for {self.registry} failed: {message}") from None
        token = getattr(result, "token", None)
        if not isinstance(token, str) or not token:
            raise MirrorError(f"Azure AD credential returned no token for {self.registry}")
        return token
