-- Per-room sequence numbers and idempotent sends.
--
-- seq numbers a room's messages 1, 2, 3, ... without gaps, in commit order: like the id it is
-- drawn while the send holds the room row lock, and rooms.last_seq is the newest one. A client
-- that has seen seq N of a room has seen every earlier message of it, and a gap means that
-- something is missing (the gateway fills it with a read after the last seq it delivered).
ALTER TABLE arcyou_chat_rooms ADD COLUMN last_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE arcyou_chat_messages ADD COLUMN seq bigint;

-- Messages stored before this migration: numbered per room in id order (ids were drawn under
-- the same room lock, so id order is commit order within a room).
UPDATE arcyou_chat_messages m
SET seq = n.seq
FROM (
    SELECT id, row_number() OVER (PARTITION BY room_id ORDER BY id) AS seq
    FROM arcyou_chat_messages
) n
WHERE m.id = n.id;
ALTER TABLE arcyou_chat_messages ALTER COLUMN seq SET NOT NULL;
CREATE UNIQUE INDEX arcyou_chat_messages_room_id_seq_key ON arcyou_chat_messages (room_id, seq);

UPDATE arcyou_chat_rooms r
SET last_seq = s.last_seq
FROM (SELECT room_id, max(seq) AS last_seq FROM arcyou_chat_messages GROUP BY room_id) s
WHERE r.id = s.room_id;

-- Events not published yet carry their seq too (published ones are history).
UPDATE outbox o
SET payload = jsonb_set(o.payload, '{message,seq}', to_jsonb(m.seq))
FROM arcyou_chat_messages m
WHERE o.status <> 'published' AND o.type = 'message.created'
  AND m.id = CASE WHEN o.payload->'message'->>'id' ~ '^[0-9]{1,18}$'
                  THEN (o.payload->'message'->>'id')::bigint END;

-- Idempotent send: a (room, sender, temp_id) is stored once; a retry gets the original back.
-- Older versions stored retries as new messages, so the key may already repeat. Every message
-- is kept: the earliest (lowest id) keeps its temp_id, later ones lose it.
DO $$
DECLARE
    cleared bigint;
BEGIN
    UPDATE arcyou_chat_messages m
    SET temp_id = NULL
    FROM (
        SELECT id, row_number() OVER (PARTITION BY room_id, user_id, temp_id ORDER BY id) AS n
        FROM arcyou_chat_messages
        WHERE temp_id IS NOT NULL
    ) d
    WHERE m.id = d.id AND d.n > 1;
    GET DIAGNOSTICS cleared = ROW_COUNT;
    IF cleared > 0 THEN
        RAISE NOTICE 'migration 0003: % later message(s) repeated an earlier (room_id, user_id, temp_id); kept them all, set their temp_id to NULL',
            cleared;
    END IF;
END
$$;
CREATE UNIQUE INDEX arcyou_chat_messages_room_user_temp_id_key
    ON arcyou_chat_messages (room_id, user_id, temp_id) WHERE temp_id IS NOT NULL;
