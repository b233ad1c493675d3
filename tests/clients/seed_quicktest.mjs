// An independent client for the seed protocol (arcyou-chat-mvp §5, §7), in Node.js with the
// built-in WebSocket: auth, join, print the backfill, send, wait for the live event, ack.
// Usage: node --experimental-websocket seed_quicktest.mjs WS_URL USER_UUID ROOM_UUID
// Exits 0 when every step behaved as the seed says, 1 otherwise (the reason on stderr).
const [url, userId, roomId] = process.argv.slice(2);
const ws = new WebSocket(url);
const replies = [];
const events = [];
let wake = null;
const fail = (why) => { console.error(`FAIL: ${why}`); process.exit(1); };
setTimeout(() => fail("timed out"), 15000);

ws.onmessage = (m) => {
  const frame = JSON.parse(m.data);
  (frame.op === "event" ? events : replies).push(frame);
  if (wake) { const w = wake; wake = null; w(); }
};
ws.onerror = () => fail("websocket error");
const next = async (list, pred = () => true) => {
  for (;;) {
    const i = list.findIndex(pred);
    if (i >= 0) return list.splice(i, 1)[0];
    await new Promise((r) => { wake = r; });
  }
};
const request = async (frame) => { ws.send(JSON.stringify(frame)); return next(replies); };
const expect = (cond, why) => { if (!cond) fail(why); };

ws.onopen = async () => {
  const auth = await request({ op: "auth", token: userId });
  expect(auth.op === "auth" && auth.success === true && auth.userId === userId, `auth: ${JSON.stringify(auth)}`);
  const join = await request({ op: "join", room_id: roomId });
  expect(join.op === "join" && join.success === true && join.room_id === roomId, `join: ${JSON.stringify(join)}`);
  const tempId = `quick-${Date.now()}`;
  const send = await request({ op: "send", room_id: roomId, content: { text: "hello from node" }, temp_id: tempId });
  expect(send.op === "send" && send.success === true && Number.isInteger(send.message_id) && send.temp_id === tempId,
    `send: ${JSON.stringify(send)}`);
  const backfill = events.filter((e) => e.source === "backfill");
  console.log(`backfill: ${backfill.length} message(s)`);
  const live = await next(events, (e) => e.source === "live" && e.message.id === send.message_id);
  expect(live.type === "message.created" && live.roomId === roomId && live.message.user_id === userId &&
    live.message.content.text === "hello from node" && live.message.temp_id === tempId &&
    typeof live.message.created_at === "string" && typeof live.timestamp === "string",
    `event: ${JSON.stringify(live)}`);
  console.log(`live event: ${JSON.stringify(live)}`);
  const ack = await request({ op: "ack", room_id: roomId, last_read_message_id: send.message_id });
  expect(ack.success === true && ack.last_read_message_id === send.message_id, `ack: ${JSON.stringify(ack)}`);
  const bad = await request({ op: "send", content: { text: "x" } });
  expect(bad.success === false && bad.error === "room_id required", `room_id required: ${JSON.stringify(bad)}`);
  console.log("OK");
  ws.close();
  process.exit(0);
};
