"""The CLI's commands on the HTTP API: ``rooms create|list``, ``members add|remove``,
``history``.

Each prints one readable line per item (``--json``: the API's JSON). A refusal prints the
API's problem detail and exits 1; an API that cannot be reached, or a bad ``--api`` URL, one
line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

from arcyou_trio.client.api import DEFAULT_API_URL, ApiClient
from arcyou_trio.errors import ApiError, ApiUnreachable
from arcyou_trio.runner import EXIT_CONFIG


def add_arguments(sub: Any) -> None:
    """Add the API commands to the CLI's subparsers."""

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--api",
            default=os.environ.get("ARCYOU_API_URL", DEFAULT_API_URL),
            help=f"API base URL (default: ARCYOU_API_URL or {DEFAULT_API_URL})",
        )
        parser.add_argument("--user", required=True, help="acting user id")
        parser.add_argument("--token", help="bearer token (default: --user, as in dev mode)")
        parser.add_argument("--json", action="store_true", help="print the API's JSON")

    rooms = sub.add_parser("rooms", help="create or list rooms (HTTP API)")
    rooms_sub = rooms.add_subparsers(dest="action", required=True)
    create = rooms_sub.add_parser("create", help="create a room; you become its owner")
    create.add_argument("name")
    create.add_argument("--member", action="append", type=uuid.UUID, default=[], help="a member")
    create.add_argument("--description")
    common(create)
    listing = rooms_sub.add_parser("list", help="your rooms, latest activity first")
    listing.add_argument("--limit", type=int, default=50)
    common(listing)

    members = sub.add_parser("members", help="add or remove room members (HTTP API)")
    members_sub = members.add_subparsers(dest="action", required=True)
    add = members_sub.add_parser("add", help="add a member (or change its role)")
    add.add_argument("room", type=uuid.UUID)
    add.add_argument("member", type=uuid.UUID)
    add.add_argument("--role", choices=("owner", "manager", "participant"))
    common(add)
    remove = members_sub.add_parser("remove", help="remove a member (yourself: leave)")
    remove.add_argument("room", type=uuid.UUID)
    remove.add_argument("member", type=uuid.UUID)
    common(remove)

    history = sub.add_parser("history", help="a room's messages, oldest first (HTTP API)")
    history.add_argument("room", type=uuid.UUID)
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--before-seq", type=int, help="page back: messages before this seq")
    history.add_argument("--after-seq", type=int, help="page forward: messages after this seq")
    common(history)


def format_message(message: dict[str, Any]) -> str:
    content = message.get("content", {})
    if message.get("type") == "system":
        details = ", ".join(f"{k}={v}" for k, v in content.items() if k != "event")
        text = f"* {content.get('event')} ({details})"
    else:
        text = str(content.get("text", content))
    user = str(message.get("user_id", "?"))[:8]
    return f"#{message['seq']} {message['created_at']} {user}: {text}"


def _run(client: ApiClient, args: argparse.Namespace) -> Any:
    if args.command == "rooms" and args.action == "create":
        room = client.create_room(args.name, args.member, args.description)
        return room, f"created room {room['id']} ({room['name']}), you are its owner"
    if args.command == "rooms":
        page = client.list_rooms(args.limit)
        lines = [
            f"{r['id']}  {r['name']}  [{r['my_role']}]  unread {r['unread_count']}"
            for r in page["items"]
        ]
        return page, "\n".join(lines) if lines else "no rooms"
    if args.command == "members" and args.action == "add":
        member = client.put_member(args.room, args.member, args.role)
        return member, f"{member['user_id']} is a member of {args.room} as {member['role']}"
    if args.command == "members":
        client.remove_member(args.room, args.member)
        return None, f"{args.member} is no longer a member of {args.room}"
    page = client.messages(
        args.room, limit=args.limit, before_seq=args.before_seq, after_seq=args.after_seq
    )
    lines = [format_message(m) for m in page["items"]]
    if page["has_more"]:
        first = page["items"][0]["seq"] if page["items"] else 0
        lines.append(f"(more: --before-seq {first})" if args.after_seq is None else "(more)")
    return page, "\n".join(lines) if lines else "no messages"


def run_api_command(args: argparse.Namespace) -> int:
    name = f"arcyou-trio {args.command}"
    try:
        client = ApiClient(args.api, args.token or args.user)
    except ValueError as exc:
        print(f"{name}: --api: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        body, text = _run(client, args)
    except ApiUnreachable as exc:
        print(f"{name}: {exc}; is the API running (arcyou-trio api)?", file=sys.stderr)
        return EXIT_CONFIG
    except ApiError as exc:
        print(f"{name}: refused ({exc.status}): {exc.detail}", file=sys.stderr)
        return 1
    print(json.dumps(body, ensure_ascii=False, indent=2) if args.json and body else text)
    return 0
