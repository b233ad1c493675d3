"""Token verification: dev mode (the token is the user's UUID) or signed JWTs.

Verifying is pure CPU work; the key set's text is read by :mod:`arcyou_trio.keys`, once at
startup and then every ``JWT_JWKS_REFRESH_MS`` by :func:`refresh_keys` (rotation without a
restart). In JWT mode the keys come from ``JWT_PUBLIC_KEY`` (one PEM public key)
or a JSON Web Key Set (``JWT_JWKS_FILE`` / ``JWT_JWKS_URL``; a token picks its key with the
``kid`` header). Each key's type decides the algorithms it accepts,
so a token can never pick ``none`` or an HMAC algorithm keyed with a public key; symmetric
(``oct``) keys are refused at startup. ``exp`` is required, ``nbf`` and ``iat`` are checked when
present, ``iss``/``aud`` when configured, and ``sub`` must be a UUID: it becomes the user id.

A refused token raises :class:`AuthError` whose ``reason`` is one of the codes below; the
gateway sends it to the client next to the seed's ``"Unauthorized"``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import attrs
import jwt
import trio
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from arcyou_trio.config import DEV_PLACEHOLDER, Settings
from arcyou_trio.errors import AuthError, ConfigError
from arcyou_trio.keys import jwks_source

log = logging.getLogger(__name__)

# -- reasons: short, stable codes sent to the client in the `reason` field of a failed auth ----

TOKEN_EXPIRED = "token_expired"  # exp is past (beyond the leeway)
TOKEN_NOT_YET_VALID = "token_not_yet_valid"  # nbf, or iat, is in the future (beyond the leeway)
INVALID_SIGNATURE = "invalid_signature"  # the signature does not match the key
INVALID_TOKEN = "invalid_token"  # malformed, algorithm not allowed, exp missing or not a number
INVALID_ISSUER = "invalid_issuer"  # iss missing or wrong (only when JWT_ISSUER is set)
INVALID_AUDIENCE = "invalid_audience"  # aud missing or wrong (only when JWT_AUDIENCE is set)
INVALID_SUBJECT = "invalid_subject"  # sub missing, or not a UUID (dev mode: the token)
UNKNOWN_KEY = "unknown_key"  # JWKS: no key for the token's kid (or no kid, several keys)

REASONS = frozenset(
    {
        TOKEN_EXPIRED,
        TOKEN_NOT_YET_VALID,
        INVALID_SIGNATURE,
        INVALID_TOKEN,
        INVALID_ISSUER,
        INVALID_AUDIENCE,
        INVALID_SUBJECT,
        UNKNOWN_KEY,
    }
)

PublicKey: TypeAlias = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

_RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_ALGS = {"secp256r1": ("ES256",), "secp384r1": ("ES384",), "secp521r1": ("ES512",)}
_EDDSA_ALGS = ("EdDSA",)
_SIGNING_ALGS = (*_RSA_ALGS, *(a for algs in _EC_ALGS.values() for a in algs), *_EDDSA_ALGS)


@attrs.frozen
class VerificationKey:
    """One public key and the algorithms a token may use with it."""

    key: PublicKey
    algorithms: tuple[str, ...]
    kid: str | None = None


def verifier_from_settings(settings: Settings) -> Verifier:
    """The gateway's and API's verifier; raises ConfigError when the key settings are missing
    or bad (a key set is read here, once; :func:`refresh_keys` re-reads it)."""
    pem = settings.require_auth_key()
    options: dict[str, Any] = {
        "leeway_s": settings.jwt_leeway_ms / 1000,
        "issuer": settings.jwt_issuer,
        "audience": settings.jwt_audience,
    }
    if pem is not None:
        return Verifier(pem, **options)
    source = jwks_source(settings)
    assert source is not None
    variable, read = source
    return Verifier(jwks=read(), jwks_variable=variable, **options)


async def refresh_keys(verifier: Verifier, settings: Settings) -> None:
    """Re-read the key set every ``JWT_JWKS_REFRESH_MS`` (forever; nothing to do without one).

    A key added to the set is accepted, and a token signed with a removed key refused, within
    that period. A set that cannot be read or used is logged and the current keys stay.
    """
    source = jwks_source(settings)
    if source is None:
        return
    variable, read = source
    last: str | None = None
    while True:
        await trio.sleep(settings.jwt_jwks_refresh_ms / 1000)
        try:
            text = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
            if text != last:
                count = verifier.replace_keys(text, variable=variable)
                if last is not None:
                    log.info("%s reloaded: %d key(s)", variable, count)
                last = text
        except ConfigError as exc:
            log.warning("key set refresh failed, keeping the current keys: %s", exc)


class Verifier:
    """Turns the token of an ``auth`` request into a user id, or raises :class:`AuthError`.

    Give exactly one of ``jwt_public_key`` (a PEM, or ``dev-placeholder``) and ``jwks`` (a JWK
    Set: its JSON text, or the parsed object).
    """

    def __init__(
        self,
        jwt_public_key: str | None = None,
        *,
        jwks: str | Mapping[str, Any] | None = None,
        leeway_s: float = 5.0,
        issuer: str | None = None,
        audience: str | None = None,
        jwks_variable: str = "JWT_JWKS_FILE",
    ) -> None:
        if (jwt_public_key is None) == (jwks is None):
            raise ValueError("give exactly one of jwt_public_key and jwks")
        self.dev_mode = jwt_public_key == DEV_PLACEHOLDER
        self._leeway_s = leeway_s
        self._issuer = issuer
        self._audience = audience
        self._by_kid: dict[str, VerificationKey] = {}
        self._keys: tuple[VerificationKey, ...] = ()
        self._select_by_kid = jwks is not None
        if jwks is not None:
            self.replace_keys(jwks, variable=jwks_variable)
        elif jwt_public_key is not None and not self.dev_mode:
            self._keys = (load_pem_key(jwt_public_key),)

    def replace_keys(
        self, jwks: str | Mapping[str, Any], *, variable: str = "JWT_JWKS_FILE"
    ) -> int:
        """Verify with this key set from now on (key rotation); how many keys it holds.
        Raises ConfigError naming ``variable`` (and keeps the current keys) if it is unusable."""
        keys = load_jwks(jwks, variable=variable)
        # One assignment each, read by verify() as a pair only between awaits: no torn state.
        self._by_kid = {k.kid: k for k in keys if k.kid is not None}
        self._keys = keys
        return len(keys)

    def verify(self, token: str) -> uuid.UUID:
        if self.dev_mode:
            return _uuid(token, "the token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token ({type(exc).__name__})", INVALID_TOKEN) from None
        key = self._key_for(header)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                leeway=self._leeway_s,
                issuer=self._issuer,
                audience=self._audience,
                # Without a configured audience, an `aud` claim is not checked (identity
                # providers set it routinely); with one, it must match.
                # `sub` is checked below (PyJWT >= 2.10 would check its type itself).
                options={
                    "require": ["exp"],
                    "verify_aud": self._audience is not None,
                    "verify_sub": False,
                },
            )
        except jwt.PyJWTError as exc:
            # The exception's text may quote parts of the token: only its class is logged.
            raise AuthError(f"token refused ({type(exc).__name__})", _reason(exc)) from None
        sub = claims.get("sub")
        if not isinstance(sub, str):
            raise AuthError("sub claim missing or not a string", INVALID_SUBJECT)
        return _uuid(sub, "sub")

    def _key_for(self, header: Mapping[str, Any]) -> VerificationKey:
        if not self._select_by_kid:
            return self._keys[0]
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("kid header is not a string", INVALID_TOKEN)
        if kid is not None and kid in self._by_kid:
            return self._by_kid[kid]
        # A single key serves tokens without a kid; a single key without a kid serves all.
        if len(self._keys) == 1 and (kid is None or self._keys[0].kid is None):
            return self._keys[0]
        if kid is None:
            raise AuthError("token has no kid and the key set has several keys", UNKNOWN_KEY)
        raise AuthError("no key in JWT_JWKS_FILE for the token's kid", UNKNOWN_KEY)


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return TOKEN_EXPIRED
    if isinstance(exc, jwt.ImmatureSignatureError):  # nbf or iat in the future
        return TOKEN_NOT_YET_VALID
    if isinstance(exc, jwt.InvalidSignatureError):
        return INVALID_SIGNATURE
    if isinstance(exc, jwt.InvalidIssuerError):
        return INVALID_ISSUER
    if isinstance(exc, jwt.InvalidAudienceError):
        return INVALID_AUDIENCE
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return {"iss": INVALID_ISSUER, "aud": INVALID_AUDIENCE, "sub": INVALID_SUBJECT}.get(
            exc.claim, INVALID_TOKEN
        )
    return INVALID_TOKEN


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise AuthError(f"{what} is not a UUID", INVALID_SUBJECT) from None


# -- keys --------------------------------------------------------------------------------------


def load_pem_key(pem: str) -> VerificationKey:
    """``JWT_PUBLIC_KEY``: one PEM public key (RSA, EC P-256/384/521, Ed25519 or Ed448)."""
    # Environment variables often carry PEMs with literal "\n" sequences.
    text = pem.replace("\\n", "\n").strip()
    try:
        key = load_pem_public_key(text.encode())
    except ValueError as exc:
        raise ConfigError(
            "JWT_PUBLIC_KEY", "not a PEM public key (or 'dev-placeholder' for development)"
        ) from exc
    problem, algorithms = _algorithms_for(key)
    if problem:
        raise ConfigError("JWT_PUBLIC_KEY", problem)
    assert isinstance(key, PublicKey)
    return VerificationKey(key, algorithms)


def _algorithms_for(key: object) -> tuple[str, tuple[str, ...]]:
    """The algorithms a public key's type allows, or a problem (never ``none`` or HMAC)."""
    if isinstance(key, rsa.RSAPublicKey):
        return "", _RSA_ALGS
    if isinstance(key, ec.EllipticCurvePublicKey):
        algs = _EC_ALGS.get(key.curve.name)
        if algs is None:
            return f"unsupported EC curve {key.curve.name}", ()
        return "", algs
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "", _EDDSA_ALGS
    return f"unsupported key type {type(key).__name__}", ()


def load_jwks(
    data: str | Mapping[str, Any], *, variable: str = "JWT_JWKS_FILE"
) -> tuple[VerificationKey, ...]:
    """The signing keys of a JWK Set (RFC 7517); ConfigError naming ``variable`` if unusable.

    Refused: symmetric (``oct``) keys and HMAC algorithms, private key material, keys whose
    ``alg`` does not fit their type, duplicate ``kid``s, and a key without ``kid`` in a set of
    several keys (a token could not select it). Keys marked ``"use": "enc"`` are skipped.
    """

    def bad(problem: str) -> ConfigError:
        return ConfigError(variable, problem)

    if isinstance(data, str):
        try:
            obj: Any = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise bad(f"not valid JSON ({exc})") from None
    else:
        obj = data
    if not isinstance(obj, Mapping) or not isinstance(obj.get("keys"), list):
        raise bad('not a JWK Set: expected a JSON object with a "keys" array')
    keys: list[VerificationKey] = []
    for index, entry in enumerate(obj["keys"]):
        if not isinstance(entry, Mapping):
            raise bad(f"key {index} is not a JSON object")
        key = _load_jwk(entry, f"key {index}" + _kid_note(entry), bad)
        if key is not None:
            keys.append(key)
    if not keys:
        raise bad("the key set holds no signing keys")
    if len(keys) > 1:
        if any(k.kid is None for k in keys):
            raise bad("every key needs a kid when the set holds more than one key")
        kids = [k.kid for k in keys]
        for kid in kids:
            if kids.count(kid) > 1:
                raise bad(f"duplicate kid {kid!r}")
    return tuple(keys)


def _kid_note(entry: Mapping[str, Any]) -> str:
    kid = entry.get("kid")
    return f" (kid {kid!r})" if isinstance(kid, str) else ""


def _load_jwk(
    entry: Mapping[str, Any], name: str, bad: Callable[[str], ConfigError]
) -> VerificationKey | None:
    kid, kty, alg = entry.get("kid"), entry.get("kty"), entry.get("alg")
    if kid is not None and not isinstance(kid, str):
        raise bad(f"{name}: kid must be a string")
    if alg is not None and not isinstance(alg, str):
        raise bad(f"{name}: alg must be a string")
    if kty == "oct" or (alg or "").upper().startswith("HS"):
        raise bad(
            f"{name} is a symmetric (oct/HMAC) key; only public keys (RSA, EC, OKP) are accepted"
        )
    if entry.get("use") == "enc":
        return None  # an encryption key: not for verifying signatures
    if not isinstance(kty, str):
        raise bad(f"{name}: kty missing")
    if "d" in entry:
        raise bad(f"{name} holds private key material; publish only public keys")
    if alg is not None and alg not in _SIGNING_ALGS:
        raise bad(f"{name}: unsupported alg {alg!r} (allowed: {', '.join(_SIGNING_ALGS)})")
    try:
        # The key is built from its type alone; its `alg` is checked against that type below.
        jwk = jwt.PyJWK({k: v for k, v in entry.items() if k != "alg"})
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise bad(f"{name}: unusable {kty} key ({str(exc)[:200]})") from None
    problem, algorithms = _algorithms_for(jwk.key)
    if problem:
        raise bad(f"{name}: {problem}")
    if alg is not None:
        if alg not in algorithms:
            raise bad(f"{name}: alg {alg!r} does not fit its {kty} key")
        algorithms = (alg,)
    assert isinstance(jwk.key, PublicKey)
    return VerificationKey(jwk.key, algorithms, kid)
