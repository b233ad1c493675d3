"""Token verification (``arcyou_trio.auth``) and hostile ``auth`` frames over real connections.

Unit tests of :class:`~arcyou_trio.auth.Verifier` with freshly generated RSA 2048, EC P-256 and
Ed25519 keys and tokens signed by PyJWT (or crafted by hand: ``alg: none``, HS256 keyed with
the public key's PEM): valid tokens pass, and each kind of bad token is refused with its
``reason``. JWKS: ``kid`` selection, unknown ``kid``, and keys refused at startup. End to end:
a valid token authenticates; each bad token gets the seed's ``Unauthorized`` plus ``reason``, and
its connection can neither join nor send nor hear a room's events; a second ``auth`` is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import jwt
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from arcyou_trio.auth import (
    INVALID_AUDIENCE,
    INVALID_ISSUER,
    INVALID_SIGNATURE,
    INVALID_SUBJECT,
    INVALID_TOKEN,
    REASONS,
    TOKEN_EXPIRED,
    TOKEN_NOT_YET_VALID,
    UNKNOWN_KEY,
    Verifier,
    load_jwks,
    verifier_from_settings,
)
from arcyou_trio.client import ChatClient
from arcyou_trio.config import DEV_PLACEHOLDER, Settings
from arcyou_trio.errors import AuthError, ConfigError
from tests.conftest import make_room, running_system

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

USER = uuid.UUID("6f1c1c3e-9d52-4d1e-8a0b-0c7f3a2b9e11")

# -- keys and tokens --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    """Two keys of each type: the second one is the forger's."""
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "ec2": ec.generate_private_key(ec.SECP256R1()),
        "ed": ed25519.Ed25519PrivateKey.generate(),
        "ed2": ed25519.Ed25519PrivateKey.generate(),
    }


def pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk(key: PrivateKey, **extra: Any) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        obj = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        obj = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        obj = OKPAlgorithm.to_jwk(public, as_dict=True)
    assert isinstance(obj, dict)
    return {**obj, **extra}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": str(USER), "iat": now, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: PrivateKey, alg: str, payload: dict[str, Any] | None = None, **headers: Any) -> str:
    """A JWS over any JSON payload (PyJWT's ``jwt.encode`` refuses some of the bad ones)."""
    body = json.dumps(claims() if payload is None else payload).encode()
    return jwt.PyJWS().encode(body, key, algorithm=alg, headers=headers or None)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def crafted(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}." + (
        b64url(signature)
    )


def alg_none(payload: dict[str, Any] | None = None, alg: str = "none", **header: Any) -> str:
    return crafted({"alg": alg, "typ": "JWT", **header}, claims() if payload is None else payload)


def hs256_with(secret: bytes, payload: dict[str, Any] | None = None, **header: Any) -> str:
    """The key-confusion attack: HS256 keyed with bytes the server treats as a public key."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", **header}).encode())
    body = b64url(json.dumps(claims() if payload is None else payload).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


def refused(verifier: Verifier, token: str) -> str:
    """The reason ``verifier`` refuses ``token`` with (the message never quotes the token)."""
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    assert info.value.reason in REASONS
    if len(token) > 8:
        assert token not in str(info.value)
    return info.value.reason


# -- valid tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "alg"),
    [("rsa", "RS256"), ("rsa", "RS512"), ("rsa", "PS256"), ("ec", "ES256"), ("ed", "EdDSA")],
)
def test_valid_token_gives_the_subject(keys: dict[str, PrivateKey], kind: str, alg: str) -> None:
    verifier = Verifier(pem(keys[kind]))
    assert verifier.verify(sign(keys[kind], alg)) == USER
    assert not verifier.dev_mode


def test_pem_with_escaped_newlines(keys: dict[str, PrivateKey]) -> None:
    verifier = Verifier(pem(keys["ec"]).replace("\n", "\\n"))
    assert verifier.verify(sign(keys["ec"], "ES256")) == USER


def test_subject_in_any_uuid_form(keys: dict[str, PrivateKey]) -> None:
    verifier = Verifier(pem(keys["ed"]))
    token = sign(keys["ed"], "EdDSA", claims(sub=str(USER).upper()))
    assert verifier.verify(token) == USER


def test_optional_claims_may_be_absent(keys: dict[str, PrivateKey]) -> None:
    verifier = Verifier(pem(keys["rsa"]))
    assert verifier.verify(sign(keys["rsa"], "RS256", claims(iat=None))) == USER


def test_aud_without_a_configured_audience_is_accepted(keys: dict[str, PrivateKey]) -> None:
    verifier = Verifier(pem(keys["rsa"]))
    for aud in ("some-api", ["a", "b"]):
        assert verifier.verify(sign(keys["rsa"], "RS256", claims(aud=aud))) == USER


def test_issuer_and_audience_when_configured(keys: dict[str, PrivateKey]) -> None:
    verifier = Verifier(pem(keys["ec"]), issuer="https://idp.example", audience="arcyou")
    good = claims(iss="https://idp.example", aud="arcyou")
    assert verifier.verify(sign(keys["ec"], "ES256", good)) == USER
    listed = claims(iss="https://idp.example", aud=["other", "arcyou"])
    assert verifier.verify(sign(keys["ec"], "ES256", listed)) == USER
    cases = {
        INVALID_ISSUER: [
            {**good, "iss": "https://evil.example"},
            {**good, "iss": None},
            {**good, "iss": ["https://idp.example"]},
        ],
        INVALID_AUDIENCE: [{**good, "aud": "other"}, {**good, "aud": None}, {**good, "aud": 7}],
    }
    for reason, payloads in cases.items():
        for payload in payloads:
            token = sign(keys["ec"], "ES256", {k: v for k, v in payload.items() if v is not None})
            assert refused(verifier, token) == reason, payload


# -- bad tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "RS256"), ("ec", "ES256"), ("ed", "EdDSA")])
def test_forged_signature(keys: dict[str, PrivateKey], kind: str, alg: str) -> None:
    """Signed by another key of the same type (e.g. a `sub` of the attacker's choosing)."""
    verifier = Verifier(pem(keys[kind]))
    assert refused(verifier, sign(keys[f"{kind}2"], alg)) == INVALID_SIGNATURE


def test_tampered_payload(keys: dict[str, PrivateKey]) -> None:
    verifier = Verifier(pem(keys["rsa"]))
    head, _, sig = sign(keys["rsa"], "RS256").split(".")
    other = b64url(json.dumps(claims(sub=str(uuid.uuid4()))).encode())
    assert refused(verifier, f"{head}.{other}.{sig}") == INVALID_SIGNATURE
    assert refused(verifier, f"{head}.{other}.") == INVALID_SIGNATURE


@pytest.mark.parametrize(
    ("server", "signer", "alg"),
    [
        ("rsa", "ec", "ES256"),
        ("ec", "rsa", "RS256"),
        ("ed", "rsa", "PS256"),
        ("rsa", "ed", "EdDSA"),
    ],
)
def test_wrong_key_type(keys: dict[str, PrivateKey], server: str, signer: str, alg: str) -> None:
    """The token's algorithm does not fit the server's key type: refused before any crypto."""
    assert refused(Verifier(pem(keys[server])), sign(keys[signer], alg)) == INVALID_TOKEN


def test_alg_of_the_key_family_with_a_header_lie(keys: dict[str, PrivateKey]) -> None:
    """An RS256 signature relabelled PS256 (same key family) does not verify."""
    verifier = Verifier(pem(keys["rsa"]))
    _, body, sig = sign(keys["rsa"], "RS256").split(".")
    head = b64url(json.dumps({"alg": "PS256", "typ": "JWT"}).encode())
    assert refused(verifier, f"{head}.{body}.{sig}") == INVALID_SIGNATURE


def test_expired(keys: dict[str, PrivateKey]) -> None:
    now = int(time.time())
    verifier = Verifier(pem(keys["ec"]), leeway_s=5)
    assert refused(verifier, sign(keys["ec"], "ES256", claims(exp=now - 60))) == TOKEN_EXPIRED
    # Within the leeway it still passes; without leeway it does not.
    assert verifier.verify(sign(keys["ec"], "ES256", claims(exp=now - 2))) == USER
    strict = Verifier(pem(keys["ec"]), leeway_s=0)
    assert refused(strict, sign(keys["ec"], "ES256", claims(exp=now - 2))) == TOKEN_EXPIRED


def test_not_yet_valid(keys: dict[str, PrivateKey]) -> None:
    now = int(time.time())
    verifier = Verifier(pem(keys["ed"]), leeway_s=5)
    for payload in (claims(nbf=now + 60), claims(iat=now + 60)):
        assert refused(verifier, sign(keys["ed"], "EdDSA", payload)) == TOKEN_NOT_YET_VALID
    assert verifier.verify(sign(keys["ed"], "EdDSA", claims(nbf=now + 2, iat=now + 2))) == USER


def test_expired_token_with_a_forged_signature_is_a_signature_failure(
    keys: dict[str, PrivateKey],
) -> None:
    """Claims of an unverified token are never judged (or reported)."""
    token = sign(keys["rsa2"], "RS256", claims(exp=int(time.time()) - 60))
    assert refused(Verifier(pem(keys["rsa"])), token) == INVALID_SIGNATURE


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none(keys: dict[str, PrivateKey], alg: str) -> None:
    for kind in ("rsa", "ec", "ed"):
        assert refused(Verifier(pem(keys[kind])), alg_none(alg=alg)) == INVALID_TOKEN


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed"])
def test_hs256_keyed_with_the_public_key(keys: dict[str, PrivateKey], kind: str) -> None:
    """The classic key-confusion attack: the public PEM (public knowledge) as HMAC secret."""
    verifier = Verifier(pem(keys[kind]))
    for secret in (pem(keys[kind]).encode(), pem(keys[kind]).strip().encode()):
        assert refused(verifier, hs256_with(secret)) == INVALID_TOKEN


@pytest.mark.parametrize(
    "payload",
    [claims(sub=None), claims(sub="not-a-uuid"), claims(sub=""), claims(sub=42)],
    ids=["missing", "not-a-uuid", "empty", "integer"],
)
def test_bad_subject(keys: dict[str, PrivateKey], payload: dict[str, Any]) -> None:
    verifier = Verifier(pem(keys["rsa"]))
    assert refused(verifier, sign(keys["rsa"], "RS256", payload)) == INVALID_SUBJECT


@pytest.mark.parametrize(
    "payload",
    [claims(exp=None), claims(exp="tomorrow")],
    ids=["missing", "not-a-number"],
)
def test_bad_exp(keys: dict[str, PrivateKey], payload: dict[str, Any]) -> None:
    verifier = Verifier(pem(keys["ec"]))
    assert refused(verifier, sign(keys["ec"], "ES256", payload)) == INVALID_TOKEN


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x",
        str(USER),
        "a.b.c",
        "a.b",
        "....",
        "eyJhbGciOiJSUzI1NiJ9.e30",
        crafted({"alg": "RS256", "kid": 5}, claims(), b"sig"),
        b64url(b"[" * 3000) + ".e30.",
    ],
)
def test_malformed(keys: dict[str, PrivateKey], token: str) -> None:
    assert refused(Verifier(pem(keys["rsa"])), token) == INVALID_TOKEN


# -- JWKS -----------------------------------------------------------------------------------------


def test_jwks_selects_the_key_by_kid(keys: dict[str, PrivateKey]) -> None:
    verifier = Verifier(
        jwks={
            "keys": [
                jwk(keys["rsa"], kid="r1"),
                jwk(keys["ec"], kid="e1"),
                jwk(keys["ed"], kid="d1"),
            ]
        }
    )
    assert verifier.verify(sign(keys["rsa"], "RS256", kid="r1")) == USER
    assert verifier.verify(sign(keys["rsa"], "PS384", kid="r1")) == USER
    assert verifier.verify(sign(keys["ec"], "ES256", kid="e1")) == USER
    assert verifier.verify(sign(keys["ed"], "EdDSA", kid="d1")) == USER
    # The right key type under the wrong kid: the key named by kid decides.
    assert refused(verifier, sign(keys["ec"], "ES256", kid="r1")) == INVALID_TOKEN
    assert refused(verifier, sign(keys["ec2"], "ES256", kid="e1")) == INVALID_SIGNATURE
    assert refused(verifier, sign(keys["rsa"], "RS256", kid="nope")) == UNKNOWN_KEY
    assert refused(verifier, sign(keys["rsa"], "RS256")) == UNKNOWN_KEY  # no kid, three keys
    assert refused(verifier, alg_none(kid="r1")) == INVALID_TOKEN
    assert refused(verifier, hs256_with(pem(keys["rsa"]).encode(), kid="r1")) == INVALID_TOKEN
    secret = json.dumps(jwk(keys["rsa"], kid="r1")).encode()
    assert refused(verifier, hs256_with(secret, kid="r1")) == INVALID_TOKEN


def test_jwks_from_json_text(keys: dict[str, PrivateKey]) -> None:
    verifier = Verifier(jwks=json.dumps({"keys": [jwk(keys["ec"], kid="e1")]}))
    assert verifier.verify(sign(keys["ec"], "ES256", kid="e1")) == USER


def test_jwks_single_key(keys: dict[str, PrivateKey]) -> None:
    named = Verifier(jwks={"keys": [jwk(keys["ed"], kid="d1")]})
    assert named.verify(sign(keys["ed"], "EdDSA")) == USER  # no kid: the only key
    assert refused(named, sign(keys["ed"], "EdDSA", kid="d2")) == UNKNOWN_KEY
    unnamed = Verifier(jwks={"keys": [jwk(keys["ed"])]})
    assert unnamed.verify(sign(keys["ed"], "EdDSA")) == USER
    assert unnamed.verify(sign(keys["ed"], "EdDSA", kid="any")) == USER
    assert refused(unnamed, sign(keys["ed2"], "EdDSA")) == INVALID_SIGNATURE


def test_jwks_alg_restricts_the_key(keys: dict[str, PrivateKey]) -> None:
    verifier = Verifier(jwks={"keys": [jwk(keys["rsa"], kid="r1", alg="RS256", use="sig")]})
    assert verifier.verify(sign(keys["rsa"], "RS256", kid="r1")) == USER
    assert refused(verifier, sign(keys["rsa"], "PS256", kid="r1")) == INVALID_TOKEN


def test_jwks_skips_encryption_keys(keys: dict[str, PrivateKey]) -> None:
    enc = jwk(keys["rsa2"], kid="x1", use="enc", alg="RSA-OAEP")
    verifier = Verifier(jwks={"keys": [enc, jwk(keys["rsa"], kid="r1")]})
    assert verifier.verify(sign(keys["rsa"], "RS256", kid="r1")) == USER
    assert refused(verifier, sign(keys["rsa2"], "RS256", kid="x1")) == UNKNOWN_KEY


def _jwks_error(jwks: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_jwks(jwks)
    assert info.value.variable == "JWT_JWKS_FILE"
    return info.value


def test_jwks_with_an_oct_key_is_refused_at_startup(keys: dict[str, PrivateKey]) -> None:
    oct_key = {"kty": "oct", "kid": "h1", "k": b64url(b"a shared secret of 32 bytes!!!!!")}
    err = _jwks_error({"keys": [jwk(keys["rsa"], kid="r1"), oct_key]})
    assert "oct" in err.problem and "h1" in err.problem
    assert "a shared secret" not in str(err)
    with pytest.raises(ConfigError):
        Verifier(jwks={"keys": [oct_key]})


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda k: [jwk(k["rsa"], kid="r1", alg="HS256")], "HMAC"),
        (lambda k: [jwk(k["rsa"], kid="r1", alg="none")], "alg"),
        (lambda k: [jwk(k["rsa"], kid="r1", alg="ES256")], "does not fit"),
        (lambda k: [jwk(k["ec"], kid="e1", alg="ES384")], "does not fit"),
        (lambda k: [jwk(k["rsa"], kid="r1"), jwk(k["ec"])], "kid"),
        (lambda k: [jwk(k["rsa"], kid="r1"), jwk(k["ec"], kid="r1")], "duplicate kid"),
        (lambda k: [jwk(k["rsa"], kid=7)], "kid"),
        (lambda k: [jwk(k["rsa"], kid="r1", d="AQAB")], "private"),
        (lambda k: [{"kid": "r1", "n": "AQAB", "e": "AQAB"}], "kty"),
        (lambda k: [{"kty": "RSA", "kid": "r1"}], "unusable"),
        (lambda k: [{"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"}], "unusable"),
        (lambda k: [{"kty": "XYZ"}], "unusable"),
        (lambda k: ["not a key"], "not a JSON object"),
        (lambda k: [], "no signing keys"),
        (lambda k: [jwk(k["rsa"], use="enc")], "no signing keys"),
    ],
)
def test_jwks_refused_at_startup(
    keys: dict[str, PrivateKey], make: Callable[[dict[str, PrivateKey]], list[Any]], words: str
) -> None:
    assert words in _jwks_error({"keys": make(keys)}).problem


@pytest.mark.parametrize(
    "text", ["", "{", "[]", '{"kty": "RSA"}', '{"keys": {}}', "null", "[" * 5000]
)
def test_jwks_not_a_key_set(text: str) -> None:
    _jwks_error(text)


def test_verifier_needs_exactly_one_key_source(keys: dict[str, PrivateKey]) -> None:
    with pytest.raises(ValueError):
        Verifier()
    with pytest.raises(ValueError):
        Verifier(pem(keys["rsa"]), jwks={"keys": [jwk(keys["rsa"])]})


# -- dev mode and settings -------------------------------------------------------------------------


def test_dev_mode(keys: dict[str, PrivateKey]) -> None:
    verifier = Verifier(DEV_PLACEHOLDER)
    assert verifier.dev_mode
    assert verifier.verify(str(USER)) == USER
    assert refused(verifier, "not-a-uuid") == INVALID_SUBJECT
    assert refused(verifier, sign(keys["rsa"], "RS256")) == INVALID_SUBJECT


def test_verifier_from_settings_pem(keys: dict[str, PrivateKey]) -> None:
    settings = Settings.from_env(
        {"JWT_PUBLIC_KEY": pem(keys["ec"]), "JWT_ISSUER": "iss", "JWT_LEEWAY_MS": "0"}
    )
    verifier = verifier_from_settings(settings)
    assert verifier.verify(sign(keys["ec"], "ES256", claims(iss="iss"))) == USER
    assert refused(verifier, sign(keys["ec"], "ES256")) == INVALID_ISSUER


def test_verifier_from_settings_jwks_only(keys: dict[str, PrivateKey], tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(keys["rsa"], kid="r1")]}))
    for env in ({}, {"JWT_PUBLIC_KEY": DEV_PLACEHOLDER}):
        settings = Settings.from_env({**env, "JWT_JWKS_FILE": str(path), "JWT_AUDIENCE": "a"})
        assert not settings.dev_auth
        verifier = verifier_from_settings(settings)
        assert not verifier.dev_mode
        assert verifier.verify(sign(keys["rsa"], "RS256", claims(aud="a"), kid="r1")) == USER
        assert refused(verifier, str(USER)) == INVALID_TOKEN
        assert refused(verifier, sign(keys["rsa"], "RS256", kid="r1")) == INVALID_AUDIENCE


# -- end to end ------------------------------------------------------------------------------------


def _bad_tokens(keys: dict[str, PrivateKey], jwks_kid: bool) -> dict[str, tuple[str, str]]:
    """Tokens naming ``USER`` (a member of the room) that must not authenticate."""
    now = int(time.time())
    headers = {"kid": "r1"} if jwks_kid else {}
    return {
        "forged": (sign(keys["rsa2"], "RS256", **headers), INVALID_SIGNATURE),
        "wrong-key-type": (sign(keys["ec"], "ES256", **headers), INVALID_TOKEN),
        "expired": (sign(keys["rsa"], "RS256", claims(exp=now - 600), **headers), TOKEN_EXPIRED),
        "not-yet-valid": (
            sign(keys["rsa"], "RS256", claims(nbf=now + 600), **headers),
            TOKEN_NOT_YET_VALID,
        ),
        "alg-none": (alg_none(**headers), INVALID_TOKEN),
        "hs256-public-key": (hs256_with(pem(keys["rsa"]).encode(), **headers), INVALID_TOKEN),
        "no-exp": (sign(keys["rsa"], "RS256", claims(exp=None), **headers), INVALID_TOKEN),
        "no-sub": (sign(keys["rsa"], "RS256", claims(sub=None), **headers), INVALID_SUBJECT),
        "sub-not-uuid": (
            sign(keys["rsa"], "RS256", claims(sub="admin"), **headers),
            INVALID_SUBJECT,
        ),
        "plain-uuid": (str(USER), INVALID_TOKEN),
    }


async def _check_locked_out(
    bad: ChatClient, token: str, reason: str, owner: ChatClient, room: uuid.UUID
) -> None:
    assert await bad.auth(token) == {
        "op": "auth",
        "success": False,
        "error": "Unauthorized",
        "reason": reason,
    }
    assert await bad.join(room) == {"op": "join", "success": False, "error": "Unauthorized"}
    sent = await bad.send(room, "let me in", temp_id="x")
    assert sent == {"op": "send", "success": False, "error": "Unauthorized", "temp_id": "x"}
    # The real user speaks in the room: the refused connection hears nothing of it.
    reply = await owner.send(room, f"secret for {reason}")
    assert reply["success"] is True
    with trio.fail_after(5):
        while (await owner.next_event())["message"]["id"] != reply["message_id"]:
            pass
    assert (await bad.join(room))["error"] == "Unauthorized"
    await trio.sleep(0.1)
    assert bad.pending_events() == []


@pytest.fixture
def jwt_settings(settings: Settings, keys: dict[str, PrivateKey]) -> Settings:
    return attrs.evolve(settings, jwt_public_key=pem(keys["rsa"]))


async def test_e2e_valid_token_joins_and_sends(
    jwt_settings: Settings, keys: dict[str, PrivateKey]
) -> None:
    other = uuid.uuid4()
    room = make_room(jwt_settings.database_url, USER, other)
    async with running_system(jwt_settings) as system, ChatClient.connect(system.url) as c:
        assert await c.auth(sign(keys["rsa"], "PS256")) == {
            "op": "auth",
            "success": True,
            "userId": str(USER),
        }
        assert (await c.join(room))["success"] is True
        reply = await c.send(room, "hi", temp_id="t1")
        assert reply["success"] is True
        with trio.fail_after(5):
            event = await c.next_event()
        assert event["message"]["user_id"] == str(USER)
        assert event["message"]["id"] == reply["message_id"]


async def test_e2e_bad_tokens_are_locked_out(
    jwt_settings: Settings, keys: dict[str, PrivateKey], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="arcyou_trio.gateway")
    room = make_room(jwt_settings.database_url, USER)
    bad_tokens = _bad_tokens(keys, jwks_kid=False)
    async with (
        running_system(jwt_settings) as system,
        ChatClient.connect(system.url) as owner,
    ):
        assert (await owner.auth(sign(keys["rsa"], "RS256")))["success"] is True
        assert (await owner.join(room))["success"] is True
        for token, reason in bad_tokens.values():
            async with ChatClient.connect(system.url) as bad:
                await _check_locked_out(bad, token, reason, owner, room)
    logged = caplog.text
    for name, (token, reason) in bad_tokens.items():
        assert token not in logged, name
        assert reason in logged
    assert "auth failed from" in logged


async def test_e2e_jwks(settings: Settings, keys: dict[str, PrivateKey], tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(keys["rsa"], kid="r1"), jwk(keys["ed"], kid="d1")]}))
    jwks_settings = attrs.evolve(settings, jwt_public_key=None, jwt_jwks_file=str(path))
    room = make_room(settings.database_url, USER)
    async with (
        running_system(jwks_settings) as system,
        ChatClient.connect(system.url) as owner,
    ):
        assert (await owner.auth(sign(keys["ed"], "EdDSA", kid="d1")))["success"] is True
        assert (await owner.join(room))["success"] is True
        bad_tokens = _bad_tokens(keys, jwks_kid=True)
        bad_tokens["unknown-kid"] = (sign(keys["rsa"], "RS256", kid="r2"), UNKNOWN_KEY)
        bad_tokens["no-kid"] = (sign(keys["rsa"], "RS256"), UNKNOWN_KEY)
        for token, reason in bad_tokens.values():
            async with ChatClient.connect(system.url) as bad:
                await _check_locked_out(bad, token, reason, owner, room)


async def test_e2e_failed_auth_can_be_retried(
    jwt_settings: Settings, keys: dict[str, PrivateKey]
) -> None:
    async with running_system(jwt_settings) as system, ChatClient.connect(system.url) as c:
        expired = sign(keys["rsa"], "RS256", claims(exp=int(time.time()) - 600))
        assert (await c.auth(expired))["reason"] == TOKEN_EXPIRED
        assert (await c.auth(sign(keys["rsa"], "RS256")))["userId"] == str(USER)


async def test_e2e_second_auth_is_refused_and_keeps_the_user(
    jwt_settings: Settings, keys: dict[str, PrivateKey]
) -> None:
    other = uuid.uuid4()
    room = make_room(jwt_settings.database_url, USER)
    async with running_system(jwt_settings) as system, ChatClient.connect(system.url) as c:
        assert (await c.auth(sign(keys["rsa"], "RS256")))["success"] is True
        for token in (sign(keys["rsa"], "RS256", claims(sub=str(other))), "garbage"):
            assert await c.auth(token) == {
                "op": "auth",
                "success": False,
                "error": "already authenticated",
            }
        # Still USER: a member of the room (`other` is not), and the sender of its messages.
        assert (await c.join(room))["success"] is True
        reply = await c.send(room, "still me")
        assert reply["success"] is True
        with trio.fail_after(5):
            event = await c.next_event()
        assert event["message"]["user_id"] == str(USER)


async def test_e2e_dev_mode_reply_is_the_seeds(settings: Settings) -> None:
    """Dev mode (tokens are UUIDs) keeps the seed's reply exactly, without `reason`."""
    async with running_system(settings) as system, ChatClient.connect(system.url) as c:
        assert await c.auth("not-a-uuid") == {
            "op": "auth",
            "success": False,
            "error": "Unauthorized",
        }
