-- The seed's four tables (arcyou-chat-mvp §4) with their enums, defaults and foreign keys.
CREATE TYPE arcyou_chat_message_type AS ENUM ('text', 'image', 'file', 'system');
CREATE TYPE arcyou_chat_message_status AS ENUM ('sent', 'delivered', 'read', 'deleted');
CREATE TYPE arcyou_chat_member_role AS ENUM ('owner', 'manager', 'participant');
CREATE TYPE outbox_status AS ENUM ('pending', 'in_progress', 'published', 'dead');

CREATE TABLE arcyou_chat_rooms (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL,
    description     text,
    last_message_id bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz
);

CREATE TABLE arcyou_chat_messages (
    id                  bigserial PRIMARY KEY,
    room_id             uuid NOT NULL REFERENCES arcyou_chat_rooms (id) ON DELETE CASCADE,
    user_id             uuid NOT NULL,
    type                arcyou_chat_message_type NOT NULL DEFAULT 'text',
    content             jsonb NOT NULL,
    reply_to_message_id bigint REFERENCES arcyou_chat_messages (id) ON DELETE SET NULL,
    status              arcyou_chat_message_status NOT NULL DEFAULT 'sent',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz,
    deleted_at          timestamptz
);
-- Backfill reads one room's messages after an id, in id order.
CREATE INDEX arcyou_chat_messages_room_id_id_idx ON arcyou_chat_messages (room_id, id);

CREATE TABLE arcyou_chat_members (
    room_id              uuid NOT NULL REFERENCES arcyou_chat_rooms (id) ON DELETE CASCADE,
    user_id              uuid NOT NULL,
    role                 arcyou_chat_member_role NOT NULL DEFAULT 'participant',
    last_read_message_id bigint,
    created_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    PRIMARY KEY (room_id, user_id)
);
-- "Which rooms is this user in" (room lists, admin tools).
CREATE INDEX arcyou_chat_members_user_id_idx ON arcyou_chat_members (user_id);

CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    type            text NOT NULL,
    room_id         uuid NOT NULL,
    payload         jsonb NOT NULL,
    status          outbox_status NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_by       text,
    locked_until    timestamptz,
    published_at    timestamptz,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- The worker claims due pending rows in id order, and reclaims expired leases.
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE status = 'pending';
CREATE INDEX outbox_in_progress_idx ON outbox (locked_until) WHERE status = 'in_progress';
