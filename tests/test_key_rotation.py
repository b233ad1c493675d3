"""Keys rotate without a restart: the gateway and the API re-read their JWKS (file or URL)
every JWT_JWKS_REFRESH_MS; a token signed with a removed key stops working within it."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec

from arcyou_trio.auth import Verifier, refresh_keys
from arcyou_trio.client import ChatClient
from arcyou_trio.config import Settings
from arcyou_trio.errors import AuthError
from tests.helpers import free_port, wait_for, wait_healthy
from tests.test_auth import jwk
from tests.test_entrypoints import base_env, run_cli, service

pytestmark = pytest.mark.timeout(90)

USER = uuid.uuid4()


def token(key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": str(USER), "iat": now, "exp": now + 300},
        key,
        algorithm="ES256",
        headers={"kid": kid},
    )


@pytest.fixture(scope="module")
def two_keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    return ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


def write_jwks(path: Path, *entries: dict[str, Any]) -> None:
    # Replace atomically: a reader never sees half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"keys": list(entries)}))
    tmp.replace(path)


async def test_refresh_swaps_the_keys_and_keeps_them_on_a_bad_set(
    two_keys: tuple[Any, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = two_keys
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk(old, kid="old"))
    settings = Settings.from_env({"JWT_JWKS_FILE": str(path), "JWT_JWKS_REFRESH_MS": "20"})
    verifier = Verifier(jwks=path.read_text())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(refresh_keys, verifier, settings)
        assert verifier.verify(token(old, "old")) == USER
        write_jwks(path, jwk(new, kid="new"))

        async def swapped() -> bool:
            try:
                verifier.verify(token(old, "old"))
            except AuthError:
                return verifier.verify(token(new, "new")) == USER
            return False

        await wait_for(swapped, within_s=5, what="the new key set")
        # An unusable set (here: not JSON) is logged; the keys in use stay.
        with caplog.at_level(logging.WARNING, logger="arcyou_trio.auth"):
            path.write_text("{not json")

            async def warned() -> bool:
                return "keeping the current keys" in caplog.text

            await wait_for(warned, within_s=5, what="the refresh warning")
        assert verifier.verify(token(new, "new")) == USER
        nursery.cancel_scope.cancel()


def env_for(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return base_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        HOST="127.0.0.1",
        JWT_JWKS_REFRESH_MS="200",
        REDIS_CHANNEL_PREFIX=f"test-{uuid.uuid4().hex[:8]}:",
        **extra,
    )


async def test_api_and_gateway_follow_a_rotated_jwks_file(
    two_keys: tuple[Any, Any], tmp_path: Path, database_url: str, redis_url: str
) -> None:
    old, new = two_keys
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk(old, kid="old"))
    port, api_port = free_port(), free_port()
    env = env_for(
        database_url, redis_url, JWT_JWKS_FILE=str(path), PORT=str(port), API_PORT=str(api_port)
    )
    with service("arcyou_trio.gateway", env), service("arcyou_trio.api", env):
        await wait_healthy(port)
        await wait_healthy(api_port)
        base = f"http://127.0.0.1:{api_port}"

        async def api_status(tok: str) -> int:
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                response = await client.get("/v1/rooms", headers={"Authorization": f"Bearer {tok}"})
                return response.status_code

        async def ws_auth(tok: str) -> dict[str, Any]:
            async with ChatClient.connect(f"ws://127.0.0.1:{port}") as client:
                return await client.auth(tok)

        assert await api_status(token(old, "old")) == 200
        assert (await ws_auth(token(old, "old")))["success"] is True
        assert await api_status(token(new, "new")) == 401
        # Rotate: the new key in, the old one out.
        write_jwks(path, jwk(new, kid="new"))

        async def rotated() -> bool:
            return await api_status(token(old, "old")) == 401

        await wait_for(rotated, within_s=5, what="the API to drop the old key")
        assert await api_status(token(new, "new")) == 200

        async def gateway_rotated() -> bool:
            return (await ws_auth(token(old, "old")))["success"] is False

        await wait_for(gateway_rotated, within_s=5, what="the gateway to drop the old key")
        refused = await ws_auth(token(old, "old"))
        assert refused["reason"] == "unknown_key"
        assert (await ws_auth(token(new, "new")))["success"] is True


@contextmanager
def serving_jwks(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """A loopback HTTP server answering GET with ``body`` (mutable: change it to rotate)."""
    state = {"body": body}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = json.dumps(state["body"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", state
    finally:
        server.shutdown()
        server.server_close()


async def test_api_follows_a_jwks_url(
    two_keys: tuple[Any, Any], database_url: str, redis_url: str
) -> None:
    old, new = two_keys
    with serving_jwks({"keys": [jwk(old, kid="old")]}) as (url, state):
        api_port = free_port()
        env = env_for(database_url, redis_url, JWT_JWKS_URL=url, API_PORT=str(api_port))
        with service("arcyou_trio.api", env):
            await wait_healthy(api_port)
            base = f"http://127.0.0.1:{api_port}"

            async def status(tok: str) -> int:
                async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                    headers = {"Authorization": f"Bearer {tok}"}
                    return (await client.get("/v1/rooms", headers=headers)).status_code

            assert await status(token(old, "old")) == 200
            state["body"] = {"keys": [jwk(new, kid="new")]}

            async def rotated() -> bool:
                return await status(token(new, "new")) == 200

            await wait_for(rotated, within_s=5, what="the API to load the new key")
            assert await status(token(old, "old")) == 401


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"JWT_JWKS_URL": "http://127.0.0.1:1/jwks.json"}, "JWT_JWKS_URL"),
        ({"JWT_JWKS_URL": "ftp://example/jwks"}, "JWT_JWKS_URL"),
        ({"JWT_JWKS_URL": "http://127.0.0.1:1/x", "JWT_JWKS_FILE": "/x"}, "JWT_JWKS_URL"),
        ({"JWT_JWKS_FILE": "/nonexistent/jwks.json"}, "JWT_JWKS_FILE"),
        ({"JWT_JWKS_FILE": "/x", "JWT_JWKS_REFRESH_MS": "0"}, "JWT_JWKS_REFRESH_MS"),
    ],
)
@pytest.mark.parametrize("command", ["api", "gateway"])
async def test_bad_key_set_settings_stop_startup(
    extra: dict[str, str], variable: str, command: str
) -> None:
    env = base_env(DATABASE_URL="postgresql://x@127.0.0.1:1/x", **extra)
    result = await trio.to_thread.run_sync(lambda: run_cli("arcyou_trio.cli", command, env=env))
    assert result.returncode == 2, result.stdout + result.stderr
    assert variable in result.stderr and "Traceback" not in result.stderr
