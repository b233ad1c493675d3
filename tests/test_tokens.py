"""``arcyou-trio token``: a token it signs is accepted by the gateway's verifier, for each key
type; a bad key file is one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from arcyou_trio.auth import Verifier
from arcyou_trio.errors import AuthError
from arcyou_trio.tokens import TokenError, mint_token

KEYS = {
    "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


def pems(kind: str) -> tuple[bytes, str]:
    key = KEYS[kind]()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_minted_token_verifies(kind: str) -> None:
    private, public = pems(kind)
    user = uuid.uuid4()
    token = mint_token(private, user, issuer="me", audience="chat")
    assert Verifier(public, issuer="me", audience="chat").verify(token) == user


def test_expired_token_is_refused() -> None:
    private, public = pems("p256")
    token = mint_token(private, uuid.uuid4(), ttl_s=60, now_s=1_000_000)
    with pytest.raises(AuthError) as info:
        Verifier(public).verify(token)
    assert info.value.reason == "token_expired"


def test_not_a_key() -> None:
    with pytest.raises(TokenError, match="not an unencrypted PEM private key"):
        mint_token(b"hello", uuid.uuid4())


def run_token(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arcyou_trio", "token", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_command_prints_a_token(tmp_path: Path) -> None:
    private, public = pems("rsa")
    key = tmp_path / "jwt-private.pem"
    key.write_bytes(private)
    user = uuid.uuid4()
    result = run_token("--key", str(key), "--user", str(user))
    assert result.returncode == 0, result.stderr
    assert Verifier(public).verify(result.stdout.strip()) == user


def test_command_with_a_bad_key_file(tmp_path: Path) -> None:
    for path, expected in [
        (tmp_path / "missing.pem", "cannot read --key"),
        (tmp_path / "public.pem", "not an unencrypted PEM private key"),
    ]:
        if path.name == "public.pem":
            path.write_text(pems("p256")[1])
        result = run_token("--key", str(path), "--user", str(uuid.uuid4()))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr
