// The fan-out benchmark's peer: accepts any WebSocket and rebroadcasts every text message to the
// clients in the sender's room. Every client starts in room 0; `{"type":"join_room","room_id":K}`
// moves it to room K (answered with `{"type":"room_info","room_id":K}`), as in RoomManager, where a
// message goes to its room's members only (sender included).
// Usage: node server.js [PORT] (0 = any free port); prints "listening on http://ADDR".
const { WebSocketServer, WebSocket } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2] || 0), perMessageDeflate: false });
const rooms = new Map();
function leave(ws) {
  const members = rooms.get(ws.room);
  if (!members) return;
  members.delete(ws);
  if (members.size === 0) rooms.delete(ws.room);
}
function enter(ws, room) {
  leave(ws);
  ws.room = room;
  if (!rooms.has(room)) rooms.set(room, new Set());
  rooms.get(room).add(ws);
}
wss.on('listening', () => console.log(`listening on http://127.0.0.1:${wss.address().port}`));
wss.on('connection', (ws) => {
  enter(ws, 0);
  ws.on('close', () => leave(ws));
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    // Only a short message can be a join (a danmaku relayed here is longer than any join).
    if (data.length < 64 && data.includes('"join_room"')) {
      const room = Number(JSON.parse(data.toString()).room_id);
      enter(ws, room);
      ws.send(`{"type":"room_info","room_id":${room}}`);
      return;
    }
    for (const client of rooms.get(ws.room)) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: false });
    }
  });
});
