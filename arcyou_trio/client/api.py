"""A small blocking client of the HTTP API (the CLI's ``rooms``, ``members``, ``history``).

Standard library only (``urllib``): the CLI needs no HTTP dependency of its own. Errors come
back as :class:`~arcyou_trio.errors.ApiError` (the problem document's status and detail) or
:class:`~arcyou_trio.errors.ApiUnreachable`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from arcyou_trio.errors import ApiError, ApiUnreachable

DEFAULT_API_URL = "http://127.0.0.1:8081"


class ApiClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"not an http:// or https:// URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.base_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _detail(exc.read()) or exc.reason) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiUnreachable(f"cannot reach the API at {self.base_url}: {reason}") from None
        return json.loads(raw) if raw else None

    # -- the resources the CLI uses --------------------------------------------------------

    def create_room(
        self, name: str, members: list[uuid.UUID], description: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "member_ids": [str(m) for m in members]}
        if description is not None:
            body["description"] = description
        room: dict[str, Any] = self.request("POST", "/v1/rooms", body)
        return room

    def list_rooms(self, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        page: dict[str, Any] = self.request(
            "GET", "/v1/rooms", params={"limit": limit, "cursor": cursor}
        )
        return page

    def put_member(
        self, room_id: uuid.UUID, user_id: uuid.UUID, role: str | None = None
    ) -> dict[str, Any]:
        body = {} if role is None else {"role": role}
        member: dict[str, Any] = self.request("PUT", f"/v1/rooms/{room_id}/members/{user_id}", body)
        return member

    def remove_member(self, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
        self.request("DELETE", f"/v1/rooms/{room_id}/members/{user_id}")

    def messages(
        self,
        room_id: uuid.UUID,
        *,
        limit: int = 50,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> dict[str, Any]:
        page: dict[str, Any] = self.request(
            "GET",
            f"/v1/rooms/{room_id}/messages",
            params={"limit": limit, "before_seq": before_seq, "after_seq": after_seq},
        )
        return page


def _detail(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)
    return str(body)
