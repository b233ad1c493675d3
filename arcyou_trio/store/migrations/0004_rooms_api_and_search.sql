-- The HTTP API: closed rooms, a user's rooms in order, message search.

-- A closed room keeps its history (members can still read it) but takes no join, send or ack.
ALTER TABLE arcyou_chat_rooms ADD COLUMN closed_at timestamptz;

-- "My rooms": a member's current rooms without visiting the ones it left.
CREATE INDEX arcyou_chat_members_current_user_idx
    ON arcyou_chat_members (user_id, room_id) WHERE deleted_at IS NULL;
-- Member lists page by (created_at, user_id).
CREATE INDEX arcyou_chat_members_room_page_idx
    ON arcyou_chat_members (room_id, created_at, user_id) WHERE deleted_at IS NULL;

-- Search, inside PostgreSQL. Full text over the 'simple' configuration (no language-specific
-- stemming: rooms mix languages, and a word is matched as written) and trigrams for text a
-- space-split dictionary cannot cut into words (Korean and other CJK: a word inside a longer
-- word). pg_trgm is a trusted extension: a database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX arcyou_chat_messages_text_fts_idx ON arcyou_chat_messages
    USING gin (to_tsvector('simple'::regconfig, content->>'text'))
    WHERE type = 'text' AND deleted_at IS NULL;
CREATE INDEX arcyou_chat_messages_text_trgm_idx ON arcyou_chat_messages
    USING gin ((content->>'text') gin_trgm_ops)
    WHERE type = 'text' AND deleted_at IS NULL;
