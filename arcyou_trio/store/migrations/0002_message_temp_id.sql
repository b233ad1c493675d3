-- The client's temp_id travels with the message so that backfill and live events can carry it
-- (seed §5 event: "temp_id": "optional"). Nullable: most clients never send one.
ALTER TABLE arcyou_chat_messages ADD COLUMN temp_id text;
