"""``arcyou-trio client``: the seed's quick test, or an interactive chat line.

Quick test (``--send TEXT``): auth, join, print the backfill, send, print the live event of the
message just sent, exit 0 (1 with the reason if any step fails or times out). Interactive (no
``--send``): every line typed on stdin is sent to the room; events are printed as they arrive.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from typing import Any

import trio
import trio_websocket

from arcyou_trio.client.chat import ChatClient, ClientClosed, split_ws_url
from arcyou_trio.runner import EXIT_CONFIG, leaves


def format_event(event: dict[str, Any]) -> str:
    message = event.get("message", {})
    text = message.get("content", {}).get("text", "")
    user = str(message.get("user_id", "?"))[:8]
    source = event.get("source", "?")
    return f"[{source}] #{message.get('id')} {message.get('created_at')} {user}: {text}"


class Failed(Exception):
    pass


def _expect_ok(reply: dict[str, Any], what: str) -> None:
    if not reply.get("success"):
        raise Failed(f"{what} failed: {reply.get('error', reply)}")


async def _connect_and_join(client: ChatClient, args: argparse.Namespace) -> None:
    _expect_ok(await client.auth(args.token or args.user), "auth")
    _expect_ok(await client.join(args.room), "join")


async def quick_test(args: argparse.Namespace) -> None:
    with trio.fail_after(args.timeout_s):
        async with ChatClient.connect(args.url) as client:
            await _connect_and_join(client, args)
            temp_id = f"cli-{uuid.uuid4().hex[:8]}"
            sent = await client.send(args.room, args.send, temp_id=temp_id)
            _expect_ok(sent, "send")
            print(f"sent message {sent['message_id']}")
            while True:
                event = await client.next_event()
                print(format_event(event), flush=True)
                if event["source"] == "live" and event["message"]["id"] == sent["message_id"]:
                    return


async def interactive(args: argparse.Namespace) -> None:
    async with ChatClient.connect(args.url) as client:
        await _connect_and_join(client, args)
        print(f"joined {args.room} as {args.user}; type a line to send it, Ctrl-D to leave")
        async with trio.open_nursery() as nursery:

            async def show_events() -> None:
                while True:
                    print(format_event(await client.next_event()), flush=True)

            nursery.start_soon(show_events)
            stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
            buffer = b""
            async with stdin:
                while chunk := await stdin.receive_some(4096):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        text = line.decode(errors="replace").strip()
                        if text:
                            reply = await client.send(args.room, text)
                            if not reply.get("success"):
                                print(f"! {reply.get('error')}", flush=True)
            nursery.cancel_scope.cancel()


def run_client(args: argparse.Namespace) -> int:
    try:
        split_ws_url(args.url)
    except ValueError:
        print(
            f"arcyou-trio client: --url must be a ws:// or wss:// URL, got {args.url!r}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        trio.run(quick_test if args.send is not None else interactive, args)
    except BaseException as exc:
        # Errors raised inside the client's task groups arrive wrapped in exception groups.
        errors = leaves(exc)
        if all(isinstance(leaf, KeyboardInterrupt) for leaf in errors):
            return 0
        for leaf in errors:
            if isinstance(leaf, trio.TooSlowError):
                print(f"arcyou-trio client: no reply within {args.timeout_s} s", file=sys.stderr)
            elif isinstance(leaf, OSError | trio_websocket.HandshakeError):
                # Nothing was exchanged: a startup problem (wrong URL, gateway not running).
                print(
                    f"arcyou-trio client: cannot connect to {args.url}: {leaf}; is the gateway"
                    " running there?",
                    file=sys.stderr,
                )
                return EXIT_CONFIG
            elif isinstance(leaf, Failed | ClientClosed):
                print(f"arcyou-trio client: {leaf}", file=sys.stderr)
            else:
                raise
        return 1
    return 0
