"""The API benchmark's data, written with SQL in one pass: rooms, users, memberships, messages.

``rooms`` rooms of ``per_room`` messages each, ``users`` users each in ``rooms_per_user``
rooms, and one heavy user (user 0) in ``heavy_rooms`` rooms. Ids are computable: room ``n`` is
``md5('room' || n)::uuid``, user ``k`` is ``md5('user' || k)::uuid``. Message text is drawn
from an English and a Korean vocabulary (30 % Korean). The search indexes of migration 0004
are dropped for the bulk insert and built again afterwards (as an operator would load data).
"""

from __future__ import annotations

import time
import uuid

import attrs
import psycopg


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ENGLISH = _words(
    "the deploy failed again after lunch please check logs release build server client "
    "database index query latency budget review meeting schedule tomorrow morning team "
    "update design document draft customer ticket support issue fixed merged branch main "
    "test coverage flaky retry timeout network cache redis postgres kernel memory leak "
    "profile graph dashboard alert metric incident postmortem rollout canary traffic spike "
    "weekend holiday office coffee pizza birthday party welcome onboarding hiring offer "
    "question answer idea proposal vote decision budget invoice payment refund contract "
    "launch demo video slides feedback bug crash error warning notice thanks great done"
)
KOREAN = _words(
    "오늘 내일 회의 회의실 배포 점심 저녁 일정 확인 부탁 프로젝트 서버 데이터베이스 장애 "
    "복구 완료 진행 검토 문서 초안 고객 문의 답변 요청 승인 보고서 발표 자료 준비 "
    "출근 퇴근 휴가 주말 축하 생일 환영 감사 수고 공지 변경 취소 연기 시작 종료 "
    "테스트 실패 성공 로그 경고 오류 수정 반영 릴리스 일정표 회의록 안녕하세요 반갑습니다"
)


@attrs.frozen
class Shape:
    rooms: int = 1000
    per_room: int = 1000
    users: int = 10_000
    rooms_per_user: int = 10
    heavy_rooms: int = 500

    @property
    def messages(self) -> int:
        return self.rooms * self.per_room


def room_id(n: int) -> uuid.UUID:
    import hashlib

    return uuid.UUID(hashlib.md5(f"room{n}".encode()).hexdigest())


def user_id(k: int) -> uuid.UUID:
    import hashlib

    return uuid.UUID(hashlib.md5(f"user{k}".encode()).hexdigest())


_SEARCH_INDEXES = ("arcyou_chat_messages_text_fts_idx", "arcyou_chat_messages_text_trgm_idx")


def seed(database_url: str, shape: Shape) -> dict[str, float]:
    """Write the data; seconds per step."""
    took: dict[str, float] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        start = time.monotonic()
        definitions = [
            row[0]
            for row in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = ANY(%s)",
                (list(_SEARCH_INDEXES),),
            ).fetchall()
        ]
        for name in _SEARCH_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        conn.execute(
            """
            INSERT INTO arcyou_chat_rooms (id, name, last_seq, updated_at, created_at)
            SELECT md5('room' || n)::uuid, 'bench room ' || n, %(per)s,
                   now() - make_interval(secs => n), now() - interval '30 days'
            FROM generate_series(0, %(rooms)s - 1) n
            """,
            {"rooms": shape.rooms, "per": shape.per_room},
        )
        conn.execute(
            """
            INSERT INTO arcyou_chat_members (room_id, user_id, role)
            SELECT DISTINCT md5('room' || ((k * 7 + j * 101) %% %(rooms)s))::uuid,
                   md5('user' || k)::uuid, 'participant'::arcyou_chat_member_role
            FROM generate_series(0, %(users)s - 1) k, generate_series(0, %(rpu)s - 1) j
            UNION
            SELECT md5('room' || n)::uuid, md5('user0')::uuid, 'participant'
            FROM generate_series(0, %(heavy)s - 1) n
            ON CONFLICT DO NOTHING
            """,
            {
                "rooms": shape.rooms,
                "users": shape.users,
                "rpu": shape.rooms_per_user,
                "heavy": shape.heavy_rooms,
            },
        )
        took["rooms_members_s"] = time.monotonic() - start
        start = time.monotonic()
        # Room-major order: ids increase with seq within a room, as the send statement draws
        # them. Words are picked by a hash of (row, position): a skewed but fixed choice.
        conn.execute(
            """
            INSERT INTO arcyou_chat_messages (room_id, user_id, type, content, seq, created_at)
            SELECT md5('room' || (g / %(per)s))::uuid,
                   md5('user' || ((g * 13) %% %(users)s))::uuid,
                   'text',
                   jsonb_build_object('text', array_to_string(ARRAY(
                       SELECT CASE WHEN g %% 10 < 3
                                   THEN (%(ko)s::text[])[1 + (abs(hashint8(g * 8 + i)) %% %(nko)s)]
                                   ELSE (%(en)s::text[])[1 + ((abs(hashint8(g * 8 + i)) %% %(nen)s)
                                                         * (abs(hashint8(g * 8 + i)) %% %(nen)s))
                                                         / %(nen)s]
                              END
                       FROM generate_series(1, 4 + (g %% 6)) i), ' ')),
                   g %% %(per)s + 1,
                   now() - make_interval(secs => (%(total)s - g) / 10.0)
            FROM generate_series(0, %(total)s - 1) g
            ORDER BY g
            """,
            {
                "per": shape.per_room,
                "users": shape.users,
                "total": shape.messages,
                "ko": list(KOREAN),
                "nko": len(KOREAN),
                "en": list(ENGLISH),
                "nen": len(ENGLISH),
            },
        )
        took["messages_s"] = time.monotonic() - start
        start = time.monotonic()
        conn.execute(
            """
            UPDATE arcyou_chat_rooms r SET last_message_id = m.last_id
            FROM (SELECT room_id, max(id) AS last_id FROM arcyou_chat_messages GROUP BY room_id) m
            WHERE r.id = m.room_id
            """
        )
        # Read marks somewhere in the room's history, so unread counts vary.
        conn.execute(
            """
            UPDATE arcyou_chat_members mb SET last_read_message_id = r.last_message_id
                - (abs(hashtext(mb.user_id::text || mb.room_id::text)) %% %(per)s)
            FROM arcyou_chat_rooms r WHERE r.id = mb.room_id
            """,
            {"per": shape.per_room},
        )
        took["read_marks_s"] = time.monotonic() - start
        start = time.monotonic()
        for definition in definitions:
            conn.execute(definition)
        took["search_indexes_s"] = time.monotonic() - start
        start = time.monotonic()
        conn.execute("VACUUM ANALYZE")
        took["vacuum_analyze_s"] = time.monotonic() - start
    return took
