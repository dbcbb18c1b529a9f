"""JWT authentication: the algorithm list, the claims, the organization."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pgactivity.auth import Authenticator, Principal, mint_token
from pgactivity.errors import AuthenticationError, ConfigurationError
from pgactivity.settings import Settings

SECRET = "unit-test-secret-" + "s" * 64  # long enough for HS512 without PyJWT's key-length warning


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(org: Any = "org-1", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    out = {"iat": now, "exp": now + 600, **extra}
    if org is not None:
        out["org_id"] = org
    return out


def hand_signed(alg: str, key: bytes, payload: dict[str, Any]) -> str:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), digest).digest())}"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def hs(**settings: Any) -> Authenticator:
    return Authenticator(Settings(jwt_secret=SECRET, **settings))


def refused(auth: Authenticator, token: str | None) -> str:
    with pytest.raises(AuthenticationError) as info:
        auth.authenticate(token)
    message = str(info.value)
    if token:
        assert token not in message
    return message


def test_hs256_token_gives_the_organization_and_subject() -> None:
    payload = claims(sub="user-7")
    token = jwt.encode(payload, SECRET, algorithm="HS256")
    assert hs().authenticate(token) == Principal("org-1", "user-7", payload["exp"] + 5.0)


def test_missing_and_malformed_tokens() -> None:
    auth = hs()
    assert "missing token" in refused(auth, None)
    assert "missing token" in refused(auth, "")
    for token in ["abc", "a.b", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30"]:
        assert refused(auth, token) == "invalid token"


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_with_the_right_secret_are_refused(alg: str) -> None:
    assert "algorithm" in refused(hs(), hand_signed(alg, SECRET.encode(), claims()))


def test_alg_none_is_refused_with_or_without_a_signature() -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    good_signature = jwt.encode(claims(), SECRET, algorithm="HS256").rsplit(".", 1)[1]
    for token in [f"{header}.{body}.", f"{header}.{body}.{good_signature}"]:
        refused(hs(), token)
    for variant in ["None", "NONE", "nOnE"]:
        refused(hs(), f"{b64(json.dumps({'alg': variant}).encode())}.{body}.")


def test_hs256_with_another_secret_is_refused() -> None:
    refused(hs(), jwt.encode(claims(), "another-secret-" + "x" * 40, algorithm="HS256"))


def test_asymmetric_tokens_are_refused_by_an_hmac_server(rsa_key: rsa.RSAPrivateKey) -> None:
    assert "algorithm" in refused(hs(), jwt.encode(claims(), rsa_key, algorithm="RS256"))


def test_rs256_and_es256_with_a_public_key(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    rsa_auth = Authenticator(Settings(jwt_public_key=public_pem(rsa_key), jwt_algorithms=("RS256", "ES256")))
    assert rsa_auth.authenticate(jwt.encode(claims(), rsa_key, algorithm="RS256")).organization_id == "org-1"
    ec_auth = Authenticator(Settings(jwt_public_key=public_pem(ec_key), jwt_algorithms=("RS256", "ES256")))
    assert ec_auth.authenticate(jwt.encode(claims(), ec_key, algorithm="ES256")).organization_id == "org-1"
    # Signed by another key pair.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(rsa_auth, jwt.encode(claims(), other, algorithm="RS256"))


def test_algorithm_confusion_hs256_keyed_with_the_public_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """The classic swap: the attacker knows the public key and uses it as an HMAC secret."""
    pem = public_pem(rsa_key)
    auth = Authenticator(Settings(jwt_public_key=pem, jwt_algorithms=("RS256", "ES256")))
    assert "algorithm" in refused(auth, hand_signed("HS256", pem.encode(), claims()))


def test_the_configured_list_is_the_whole_list(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    only_es256 = Authenticator(Settings(jwt_public_key=public_pem(ec_key), jwt_algorithms=("ES256",)))
    assert "algorithm" in refused(only_es256, jwt.encode(claims(), rsa_key, algorithm="RS256"))


def test_an_es256_header_against_an_rsa_key_is_a_401_not_a_key_error(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """PyJWT raises InvalidKeyError (not an InvalidTokenError) when the header picks an algorithm the key
    does not fit; the algorithms the key does not fit are dropped at start, and any library error is a 401."""
    auth = Authenticator(Settings(jwt_public_key=public_pem(rsa_key), jwt_algorithms=("RS256", "ES256")))
    assert auth.algorithms == ["RS256"]
    refused(auth, jwt.encode(claims(), ec_key, algorithm="ES256"))
    # The token's header alone picks the algorithm: a forged header over an RS256 signature.
    good = jwt.encode(claims(), rsa_key, algorithm="RS256")
    _, payload, signature = good.split(".")
    refused(auth, f"{b64(json.dumps({'alg': 'ES256', 'typ': 'JWT'}).encode())}.{payload}.{signature}")
    ec_auth = Authenticator(Settings(jwt_public_key=public_pem(ec_key), jwt_algorithms=("RS256", "ES256")))
    assert ec_auth.algorithms == ["ES256"]
    refused(ec_auth, good)


@pytest.mark.parametrize(
    ("key", "algorithms", "words"),
    [
        ("not a key", ("RS256", "ES256"), "not a PEM public key"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", ("RS256", "ES256"), "not a PEM public key"),
        ("private-rsa", ("RS256",), "private key"),
        ("ec-p384", ("RS256", "ES256"), "fits none"),
        ("rsa", ("ES256",), "fits none"),
        ("ec-p256", ("RS256",), "fits none"),
    ],
)
def test_a_public_key_that_cannot_work_is_a_configuration_error_naming_the_setting(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, key: str, algorithms: tuple[str, ...], words: str
) -> None:
    pems = {
        "private-rsa": rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "ec-p384": public_pem(ec.generate_private_key(ec.SECP384R1())),
        "rsa": public_pem(rsa_key),
        "ec-p256": public_pem(ec_key),
    }
    with pytest.raises(ConfigurationError, match="PGACTIVITY_JWT_PUBLIC_KEY") as info:
        Authenticator(Settings(jwt_public_key=pems.get(key, key), jwt_algorithms=algorithms))
    assert words in str(info.value)


def test_tokens_without_exp_are_refused_unless_the_operator_opts_out() -> None:
    no_exp = {k: v for k, v in claims().items() if k != "exp"}
    token = jwt.encode(no_exp, SECRET, algorithm="HS256")
    assert "'exp'" in refused(hs(), token)
    assert hs(jwt_require_exp=False).authenticate(token) == Principal("org-1", None, None)
    # Opting out does not turn off the check of an exp that is there.
    expired = jwt.encode(claims(exp=int(time.time()) - 60), SECRET, algorithm="HS256")
    assert refused(hs(jwt_require_exp=False), expired) == "token expired"


def test_exp_and_nbf_have_a_leeway_and_expires_at_includes_it() -> None:
    now = int(time.time())
    just_expired = jwt.encode(claims(exp=now - 2), SECRET, algorithm="HS256")
    assert hs().authenticate(just_expired).expires_at == now - 2 + 5.0
    assert refused(hs(jwt_leeway_seconds=0), just_expired) == "token expired"
    almost_valid = jwt.encode(claims(nbf=now + 2), SECRET, algorithm="HS256")
    assert hs().authenticate(almost_valid).organization_id == "org-1"
    assert "nbf" in refused(hs(jwt_leeway_seconds=0), almost_valid)
    # An exp far in the future is capped, never an overflow.
    far = jwt.encode(claims(exp=10**30), SECRET, algorithm="HS256")
    expires_at = hs().authenticate(far).expires_at
    assert expires_at is not None
    assert expires_at < 10**11


def test_expiry_and_not_before() -> None:
    now = int(time.time())
    assert refused(hs(), jwt.encode(claims(exp=now - 120), SECRET, algorithm="HS256")) == "token expired"
    assert "nbf" in refused(hs(), jwt.encode(claims(nbf=now + 600), SECRET, algorithm="HS256"))
    assert hs().authenticate(jwt.encode(claims(nbf=now - 5), SECRET, algorithm="HS256")).organization_id == "org-1"
    assert "invalid" in refused(hs(), jwt.encode(claims(exp="tomorrow"), SECRET, algorithm="HS256"))


def test_audience_and_issuer_when_configured() -> None:
    auth = hs(jwt_audience="pgactivity", jwt_issuer="https://idp.example")
    good = claims(aud="pgactivity", iss="https://idp.example")
    assert auth.authenticate(jwt.encode(good, SECRET, algorithm="HS256")).organization_id == "org-1"
    assert "audience" in refused(auth, jwt.encode({**good, "aud": "other"}, SECRET, algorithm="HS256"))
    assert "issuer" in refused(auth, jwt.encode({**good, "iss": "https://evil"}, SECRET, algorithm="HS256"))
    without_aud = {k: v for k, v in good.items() if k != "aud"}
    without_iss = {k: v for k, v in good.items() if k != "iss"}
    refused(auth, jwt.encode(without_aud, SECRET, algorithm="HS256"))
    refused(auth, jwt.encode(without_iss, SECRET, algorithm="HS256"))
    # Not configured: an aud claim in the token is not held against it.
    assert hs().authenticate(jwt.encode(claims(aud="anything"), SECRET, algorithm="HS256")).organization_id == "org-1"


@pytest.mark.parametrize("org", [None, "", [], ["org-1"], {"id": "org-1"}, True, 1.5, "o" * 201])
def test_tokens_without_a_usable_organization_are_refused(org: Any) -> None:
    payload = claims(org=None) if org is None else claims(org=org)
    message = refused(hs(), jwt.encode(payload, SECRET, algorithm="HS256"))
    assert "organization" in message


def test_organization_claim_shapes_that_are_accepted() -> None:
    assert hs().authenticate(jwt.encode(claims(org=42), SECRET, algorithm="HS256")).organization_id == "42"
    assert hs().authenticate(jwt.encode(claims(org="o" * 200), SECRET, algorithm="HS256")).organization_id == "o" * 200
    # sub is optional; when present it must be a string (RFC 7519 StringOrURI).
    assert hs().authenticate(jwt.encode(claims(), SECRET, algorithm="HS256")).subject is None
    refused(hs(), jwt.encode(claims(sub=123), SECRET, algorithm="HS256"))


def test_custom_organization_claim() -> None:
    auth = hs(org_claim="tenant")
    now = int(time.time())
    token = jwt.encode({"tenant": "t-9", "org_id": "ignored", "exp": now + 60}, SECRET, algorithm="HS256")
    assert auth.authenticate(token).organization_id == "t-9"
    assert "tenant" in refused(auth, jwt.encode(claims(), SECRET, algorithm="HS256"))


def test_mint_token_round_trips_with_audience_and_issuer() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_audience="aud-1", jwt_issuer="iss-1")
    token = mint_token(settings, "org-9", subject="dev", ttl=60)
    who = Authenticator(settings).authenticate(token)
    assert (who.organization_id, who.subject) == ("org-9", "dev")
    assert who.expires_at is not None
    assert 0 < who.expires_at - time.time() <= 65
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], audience="aud-1")
    assert 55 <= decoded["exp"] - decoded["iat"] <= 60
    assert refused(Authenticator(settings), mint_token(settings, "org-9", ttl=-10)) == "token expired"


def test_no_key_is_a_configuration_error(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigurationError):
        Authenticator(Settings())
    with pytest.raises(ConfigurationError):
        mint_token(Settings(jwt_public_key=public_pem(rsa_key)), "org-1")
