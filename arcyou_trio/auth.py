"""Token verification: dev mode (the token is the user's UUID) or signed JWTs.

Pure CPU work, no I/O. In JWT mode the key type decides the allowed algorithms, so a token can
never pick ``none`` or an HMAC algorithm keyed with the public key. ``sub`` must be a UUID.
"""

from __future__ import annotations

import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from arcyou_trio.config import DEV_PLACEHOLDER, Settings
from arcyou_trio.errors import AuthError, ConfigError

_RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
_EC_ALGS = {"secp256r1": ["ES256"], "secp384r1": ["ES384"], "secp521r1": ["ES512"]}


def verifier_from_settings(settings: Settings) -> Verifier:
    """The gateway's verifier; raises ConfigError when JWT_PUBLIC_KEY is missing or bad."""
    return Verifier(
        settings.require_auth_key(),
        leeway_s=settings.jwt_leeway_ms / 1000,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


class Verifier:
    """Turns the token of an ``auth`` request into a user id, or raises :class:`AuthError`."""

    def __init__(
        self,
        jwt_public_key: str,
        *,
        leeway_s: float = 5.0,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        self.dev_mode = jwt_public_key == DEV_PLACEHOLDER
        self._leeway_s = leeway_s
        self._issuer = issuer
        self._audience = audience
        self._key: object = None
        self._algorithms: list[str] = []
        if not self.dev_mode:
            self._key, self._algorithms = _load_key(jwt_public_key)

    def verify(self, token: str) -> uuid.UUID:
        if self.dev_mode:
            return _uuid(token)
        try:
            claims = jwt.decode(
                token,
                self._key,  # type: ignore[arg-type]
                algorithms=self._algorithms,
                leeway=self._leeway_s,
                issuer=self._issuer,
                audience=self._audience,
                # Without a configured audience, an `aud` claim is not checked (identity
                # providers set it routinely); with one, it must match.
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str):
            raise AuthError("sub must be a string")
        return _uuid(sub)


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise AuthError("not a UUID") from None


def _load_key(pem: str) -> tuple[object, list[str]]:
    # Environment variables often carry PEMs with literal "\n" sequences.
    text = pem.replace("\\n", "\n").strip()
    try:
        key = load_pem_public_key(text.encode())
    except ValueError as exc:
        raise ConfigError(
            "JWT_PUBLIC_KEY", "not a PEM public key (or 'dev-placeholder' for development)"
        ) from exc
    if isinstance(key, rsa.RSAPublicKey):
        return key, _RSA_ALGS
    if isinstance(key, ec.EllipticCurvePublicKey):
        algs = _EC_ALGS.get(key.curve.name)
        if algs is None:
            raise ConfigError("JWT_PUBLIC_KEY", f"unsupported EC curve {key.curve.name}")
        return key, algs
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return key, ["EdDSA"]
    raise ConfigError("JWT_PUBLIC_KEY", f"unsupported key type {type(key).__name__}")
