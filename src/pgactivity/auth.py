"""JWT authentication: the organization a request may read comes from its token.

The algorithm list is fixed by configuration, so `alg: none` and algorithm
swaps fail. Tokens are never logged.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from pgactivity.errors import AuthenticationError, ConfigurationError
from pgactivity.settings import Settings

COOKIE_NAME = "pgactivity_token"
MAX_ORGANIZATION_ID = 200


@dataclass(frozen=True, slots=True)
class Principal:
    organization_id: str
    subject: str | None


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        if settings.jwt_public_key:
            self._key: str = settings.jwt_public_key
        elif settings.jwt_secret:
            self._key = settings.jwt_secret
        else:
            raise ConfigurationError("no JWT key: set PGACTIVITY_JWT_SECRET or PGACTIVITY_JWT_PUBLIC_KEY")
        self._algorithms = list(settings.jwt_algorithms)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._claim = settings.org_claim

    def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise AuthenticationError(
                f"missing token: send 'Authorization: Bearer <jwt>', ?access_token=<jwt> or the {COOKIE_NAME} cookie"
            )
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={"verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("token not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("token audience not accepted") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("token issuer not accepted") from None
        except jwt.InvalidAlgorithmError:
            raise AuthenticationError("token algorithm not accepted") from None
        except jwt.InvalidTokenError:
            raise AuthenticationError("invalid token") from None
        organization_id = claims.get(self._claim)
        if isinstance(organization_id, int) and not isinstance(organization_id, bool):
            organization_id = str(organization_id)
        if not isinstance(organization_id, str) or not organization_id:
            raise AuthenticationError(f"token has no organization (claim {self._claim!r})")
        if len(organization_id) > MAX_ORGANIZATION_ID:
            raise AuthenticationError(f"organization id longer than {MAX_ORGANIZATION_ID} characters")
        subject = claims.get("sub")
        return Principal(organization_id, subject if isinstance(subject, str) else None)


def mint_token(settings: Settings, organization_id: str, *, subject: str | None = None, ttl: float = 3600) -> str:
    """A token for `pgactivity token` and development; needs the shared secret (HS256)."""
    if not settings.jwt_secret:
        raise ConfigurationError(
            "minting tokens needs PGACTIVITY_JWT_SECRET (with a public key, tokens come from your identity provider)"
        )
    now = int(time.time())
    claims: dict[str, object] = {settings.org_claim: organization_id, "iat": now, "exp": now + int(ttl)}
    if subject:
        claims["sub"] = subject
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def new_secret() -> str:
    return secrets.token_urlsafe(48)
