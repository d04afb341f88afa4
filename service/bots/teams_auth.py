"""Authentication of incoming Bot Framework activities (Teams → bot), always on.

Each request carries ``Authorization: Bearer <JWT>`` signed by the Bot Framework channel
service. A token is accepted only when all of these hold:

* the header names RS256 and a key id published in the JWKS of the OpenID metadata
  (``TEAMS_OPENID_METADATA_URL``, default Bot Framework's; keys cached for a day and
  re-read, at most once a minute, when an unknown key id shows up);
* the signature verifies with that key; ``alg: none``/HMAC tokens are refused;
* ``iss`` is the metadata's issuer (``https://api.botframework.com``);
* ``aud`` is our app id (``TEAMS_APP_ID``);
* ``exp`` is present and not past, ``nbf`` not in the future (5 minutes clock skew, as the
  Bot Framework SDKs allow);
* the key is endorsed for the activity's channel (``msteams``) when the JWKS lists
  endorsements, and the token's ``serviceurl`` claim equals the activity's ``serviceUrl``,
  so replies only go where the signed token says.

Why not the Agents SDK's own validator (``JwtTokenValidator``): it fetches keys from a
hard-coded URL (no way to point it at another metadata endpoint, so it cannot be tested
without the internet), checks the issuer only on opt-in, accepts a token without ``exp``,
and does not check endorsements. This module uses PyJWT, as the SDK does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import jwt

log = logging.getLogger("vraagbaak.bots.teams.auth")

CLOCK_SKEW = 300  # seconds
CACHE_SECONDS = 24 * 3600
REFRESH_MIN_SECONDS = 60


class AuthError(Exception):
    """The request is not authenticated (→ 401). The message is for the log only."""


@dataclass
class _Keys:
    issuer: str
    keys: dict[str, dict[str, Any]]  # kid → JWK
    fetched_at: float


class BotFrameworkAuth:
    def __init__(self, app_id: str, metadata_url: str, *, http_timeout: float = 10.0) -> None:
        if not app_id:
            raise ValueError("an app id is required: without one the Teams endpoint stays disabled")
        self.app_id = app_id
        self.metadata_url = metadata_url
        self.http_timeout = http_timeout
        self._keys: _Keys | None = None
        self._lock = asyncio.Lock()
        self._last_refresh = 0.0

    # ------------------------------------------------------------------ key material
    async def _get_json(self, url: str) -> Any:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.http_timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers={"Accept": "application/json"}) as resp,
        ):
            if resp.status != 200:
                raise AuthError(f"GET {url}: HTTP {resp.status}")
            return json.loads(await resp.read())

    async def _refresh(self) -> _Keys:
        meta = await self._get_json(self.metadata_url)
        issuer, jwks_uri = meta.get("issuer"), meta.get("jwks_uri")
        if not issuer or not jwks_uri:
            raise AuthError("OpenID metadata without issuer or jwks_uri")
        jwks = await self._get_json(jwks_uri)
        keys = {k["kid"]: k for k in jwks.get("keys", []) if k.get("kid") and k.get("kty") == "RSA"}
        self._keys = _Keys(issuer=issuer, keys=keys, fetched_at=time.monotonic())
        self._last_refresh = time.monotonic()
        log.info("teams: signing keys loaded", extra={"keys": len(keys), "issuer": issuer})
        return self._keys

    async def _key_for(self, kid: str) -> tuple[str, dict[str, Any]]:
        async with self._lock:
            now = time.monotonic()
            cached = self._keys
            stale = cached is None or now - cached.fetched_at > CACHE_SECONDS
            unknown = cached is not None and kid not in cached.keys
            if stale or (unknown and now - self._last_refresh > REFRESH_MIN_SECONDS):
                try:
                    cached = await self._refresh()
                except AuthError:
                    raise
                except Exception as exc:  # noqa: BLE001 - network, JSON: keep the cached keys
                    if cached is None:
                        raise AuthError(f"cannot load the signing keys: {type(exc).__name__}") from None
                    log.warning("teams: key refresh failed, using cached keys", extra={"error": type(exc).__name__})
            assert cached is not None
            if kid not in cached.keys:
                raise AuthError("unknown signing key")
            return cached.issuer, cached.keys[kid]

    # ------------------------------------------------------------------ validation
    async def authenticate(self, authorization: str | None, activity: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Validate the request's bearer token for ``activity``: (claims, token) or AuthError."""
        if not authorization:
            raise AuthError("no Authorization header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("not a bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        if header.get("alg") != "RS256":
            raise AuthError(f"algorithm {header.get('alg')!r} not accepted")
        kid = header.get("kid")
        if not kid:
            raise AuthError("token without key id")
        issuer, jwk = await self._key_for(str(kid))
        try:
            key = jwt.PyJWK(jwk, algorithm="RS256").key
            claims = jwt.decode(
                token,
                key=key,
                algorithms=["RS256"],
                audience=self.app_id,
                issuer=issuer,
                leeway=CLOCK_SKEW,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        channel = str(activity.get("channelId") or "")
        endorsements = jwk.get("endorsements")
        if endorsements is not None and channel not in endorsements:
            raise AuthError(f"key not endorsed for channel {channel!r}")
        claimed = claims.get("serviceurl")
        if claimed is not None and _norm_url(claimed) != _norm_url(str(activity.get("serviceUrl") or "")):
            raise AuthError("serviceUrl does not match the token")
        return claims, token


def _norm_url(url: str) -> str:
    return url.strip().rstrip("/").lower()
