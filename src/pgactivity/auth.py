"""JWT authentication: the organization a request may read comes from its token.

The algorithm list is fixed by configuration, so `alg: none` and algorithm
swaps fail. A public key is parsed once, at start: a key that cannot be read,
or that fits none of the configured algorithms, is a configuration error (the
server does not start), and the algorithms it does not fit are dropped, so a
token can never make the JWT library fail on the key. Every error the library
raises for a token is a 401. `exp` is required unless the operator opts out;
`exp` and `nbf` are checked with a small leeway, and the principal says until
when its token is accepted (`expires_at`), which is when its streams end.
Tokens are never logged.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pgactivity.errors import AuthenticationError, ConfigurationError
from pgactivity.settings import Settings

logger = logging.getLogger(__name__)

COOKIE_NAME = "pgactivity_token"
MAX_ORGANIZATION_ID = 200
# An `exp` past this (year 2255) is taken as this: the stream's timer needs a float.
MAX_EXPIRY = 2**33


@dataclass(frozen=True, slots=True)
class Principal:
    organization_id: str
    subject: str | None
    # Epoch seconds until which the token is accepted (its exp plus the leeway); None: no exp.
    expires_at: float | None = None


def _describe(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "an RSA public key"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC public key on curve {key.curve.name}"
    return f"a {type(key).__name__}"


def load_public_key(pem: str, algorithms: tuple[str, ...]) -> tuple[Any, list[str]]:
    """The parsed key and the configured algorithms it fits; ConfigurationError naming the setting if none."""
    text = pem.strip().encode()
    try:
        key: Any = (
            serialization.load_ssh_public_key(text)
            if text.startswith((b"ssh-", b"ecdsa-"))
            else serialization.load_pem_public_key(text)
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        hint = " (it is a private key: give its public half)" if "PRIVATE KEY-----" in pem else ""
        raise ConfigurationError(
            f"PGACTIVITY_JWT_PUBLIC_KEY is not a PEM public key (-----BEGIN PUBLIC KEY-----){hint}"
        ) from None
    fitting = []
    for name in algorithms:
        try:
            jwt.get_algorithm_by_name(name).prepare_key(key)
        # Not a fitting key: PyJWT says so with its own errors, ValueError or TypeError (the key
        # type), or NotImplementedError (an algorithm whose library, cryptography, is missing).
        except (jwt.PyJWTError, ValueError, TypeError, NotImplementedError):
            continue
        fitting.append(name)
    if not fitting:
        raise ConfigurationError(
            f"PGACTIVITY_JWT_PUBLIC_KEY is {_describe(key)}, which fits none of the accepted algorithms "
            f"(PGACTIVITY_JWT_ALGORITHMS={','.join(algorithms)}; RS256 needs an RSA key, ES256 an EC P-256 key)"
        )
    return key, fitting


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._key: Any
        if settings.jwt_public_key:
            self._key, algorithms = load_public_key(settings.jwt_public_key, settings.jwt_algorithms)
            dropped = [a for a in settings.jwt_algorithms if a not in algorithms]
            if dropped:
                logger.info(
                    "PGACTIVITY_JWT_PUBLIC_KEY is %s: accepting %s, not %s",
                    _describe(self._key),
                    ", ".join(algorithms),
                    ", ".join(dropped),
                )
        elif settings.jwt_secret:
            self._key = settings.jwt_secret
            algorithms = list(settings.jwt_algorithms)
        else:
            raise ConfigurationError("no JWT key: set PGACTIVITY_JWT_SECRET or PGACTIVITY_JWT_PUBLIC_KEY")
        self._algorithms = algorithms
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._claim = settings.org_claim
        self._leeway = settings.jwt_leeway_seconds
        self._require = ["exp"] if settings.jwt_require_exp else []

    @property
    def algorithms(self) -> list[str]:
        return list(self._algorithms)

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
                leeway=self._leeway,
                options={"verify_aud": self._audience is not None, "require": self._require},
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
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"token has no {exc.claim!r} claim (tokens must expire)") from None
        except jwt.PyJWTError:  # InvalidTokenError and the rest (InvalidKeyError, ...): all the token's doing
            raise AuthenticationError("invalid token") from None
        organization_id = claims.get(self._claim)
        if isinstance(organization_id, int) and not isinstance(organization_id, bool):
            organization_id = str(organization_id)
        if not isinstance(organization_id, str) or not organization_id:
            raise AuthenticationError(f"token has no organization (claim {self._claim!r})")
        if len(organization_id) > MAX_ORGANIZATION_ID:
            raise AuthenticationError(f"organization id longer than {MAX_ORGANIZATION_ID} characters")
        subject = claims.get("sub")
        return Principal(organization_id, subject if isinstance(subject, str) else None, self._expires_at(claims))

    def _expires_at(self, claims: dict[str, Any]) -> float | None:
        exp = claims.get("exp")
        if exp is None:
            return None
        # The library accepted it, so int() works: accepted while now < exp + leeway.
        return float(min(int(exp), MAX_EXPIRY)) + self._leeway


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
