"""Minting tokens: ``arcyou-trio token`` signs a JWT for a user with a private key.

For operators and tests. The algorithm follows the key (RS256 for RSA, ES256/384/512 for the EC
curves, EdDSA for Ed25519/Ed448), the same choice :mod:`arcyou_trio.auth` accepts; the claims
are the ones it requires (``sub``, ``exp``, ``iat``) plus ``iss``/``aud``/``kid`` when given.
"""

from __future__ import annotations

import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from arcyou_trio.errors import ArcyouError

_EC_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class TokenError(ArcyouError):
    """A token cannot be minted: the key is unreadable or of a kind we do not sign with."""


def algorithm_for(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALG:
        return _EC_ALG[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return "EdDSA"
    raise TokenError(f"unsupported private key type {type(key).__name__}")


def mint_token(
    private_pem: bytes,
    user_id: uuid.UUID,
    *,
    ttl_s: int = 3600,
    kid: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    now_s: float | None = None,
) -> str:
    """A signed JWT whose ``sub`` is ``user_id``, valid for ``ttl_s`` seconds from now."""
    try:
        key = load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TokenError(f"not an unencrypted PEM private key: {exc}") from exc
    issued = int(time.time() if now_s is None else now_s)
    claims: dict[str, object] = {"sub": str(user_id), "iat": issued, "exp": issued + ttl_s}
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=algorithm_for(key), headers=headers)  # type: ignore[arg-type]
