// The demo page: every control uses the wsbridge SDK, served by the gateway at /sdk/client.js.
// What the page shows (subscriptions, the chat room) is page state: after Disconnect → Connect
// the new client subscribes to all of it again and rejoins the room.
import { connect } from '/sdk/client.js';

const $ = (id) => document.getElementById(id);
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const MAX_LINES = 200;

/** Adds a line to a list: newest first (logs), or at the bottom (chat, which reads top-down). */
const add = (list, text, cls, { atBottom = false } = {}) => {
  const ul = $(list);
  const li = document.createElement('li');
  li.textContent = text;
  if (cls) li.className = cls;
  if (atBottom) {
    ul.append(li);
    while (ul.children.length > MAX_LINES) ul.firstChild.remove();
    ul.scrollTop = ul.scrollHeight;
  } else {
    ul.prepend(li);
    while (ul.children.length > MAX_LINES) ul.lastChild.remove();
  }
  return li;
};

// Frame log: a body that is UTF-8 text is shown as "text" (as the protocol's text field would
// carry it); anything else (binary, control characters) stays base64 in "body".
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
function readableFrame(frame) {
  if (!('body' in frame)) return JSON.stringify(frame);
  let text;
  try {
    const b = frame.body;
    const bytes = typeof b === 'string' ? Uint8Array.from(atob(b), (c) => c.charCodeAt(0)) : b;
    text = strictUtf8.decode(bytes);
  } catch {
    return JSON.stringify(frame);
  }
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text)) return JSON.stringify(frame);
  const shown = {};
  for (const [k, v] of Object.entries(frame)) {
    if (k === 'body') shown.text = text;
    else shown[k] = v;
  }
  return JSON.stringify(shown);
}

let client;
let attempt = 0;

function showState(s) {
  const badge = $('state');
  const label = {
    connecting: 'connecting…',
    open: 'open',
    reconnecting: `reconnecting… (attempt ${attempt})`,
    closed: `closed${s.closeCode ? ` (${s.closeCode}${s.closeReason ? `: ${s.closeReason}` : ''})` : ''}`,
  }[s.state];
  badge.textContent = label;
  badge.className = `badge ${{ open: 'ok', closed: 'bad', reconnecting: 'warn' }[s.state] ?? ''}`;
  $('session').textContent = s.session ?? '–';
  // websocket, or sse when the SDK fell back to Server-Sent Events + HTTP POST.
  $('transport').textContent = s.transport ?? '–';
  $('toggle').textContent = s.state === 'closed' ? 'Connect' : 'Disconnect';
}

function start() {
  attempt = 0;
  client = connect(wsUrl, {
    onFrame: (dir, frame) => add('frames', `${dir === 'in' ? '←' : '→'} ${readableFrame(frame)}`, dir),
  });
  client.onConnectError((e) => (attempt = e.attempt));
  client.onSessionChange(showState);
  // The SDK reconnects by itself (a new session): tell the room our new session's name before
  // the SDK re-subscribes (it does so right after this is told), then reload who is there.
  client.onSessionChange((info) => {
    if (info.state !== 'open' || !chatSub) return;
    sayHello();
    setTimeout(() => void loadMembers(), 0);
  });
  showState(client.session);
  client.onDirect((m) => add('messages', `${m.subject}: ${m.text()}`));
  // A new client starts with nothing: give it the page's subscriptions and chat room again.
  for (const [pattern, entry] of pageSubs) subscribeOnPage(pattern, entry);
  if (chat) void joinRoom(chat.room, chat.nick);
}

// --- Subscriptions --------------------------------------------------------------------------
const pageSubs = new Map(); // pattern → { li, state, sub }

function subscribeOnPage(pattern, entry) {
  const sub = client.subscribe(pattern, (m) => add('messages', `${m.subject}: ${m.text()}`));
  entry.sub = sub;
  entry.state.textContent = 'subscribing…';
  entry.li.className = '';
  const refused = (err) => {
    if (entry.sub !== sub || err.code === 'closed' || err.code === 'unsubscribed') return;
    // The server said no: the pattern is not subscribed; say why, where it was listed.
    pageSubs.delete(pattern);
    entry.li.className = 'bad';
    entry.state.textContent = `refused: ${err.code}`;
    entry.button.textContent = 'dismiss';
    entry.button.onclick = () => entry.li.remove();
    $('sub-error').textContent = `${pattern}: ${err.code}: ${err.message}`;
  };
  sub.ready.then(() => {
    if (entry.sub === sub) entry.state.textContent = 'subscribed';
  }, refused);
  sub.onError(refused);
}

$('sub').onsubmit = (e) => {
  e.preventDefault();
  const pattern = $('sub-pattern').value.trim();
  $('sub-error').textContent = '';
  if (!pattern) return;
  if (pageSubs.has(pattern)) {
    $('sub-error').textContent = `${pattern}: already subscribed`;
    return;
  }
  const li = document.createElement('li');
  const name = document.createElement('code');
  name.textContent = pattern;
  const state = document.createElement('span');
  state.className = 'state';
  const button = document.createElement('button');
  button.textContent = 'unsubscribe';
  const entry = { li, state, button, sub: null };
  button.onclick = () => {
    entry.sub?.();
    pageSubs.delete(pattern);
    li.remove();
  };
  li.append(name, ' ', state, ' ', button);
  $('subs').append(li);
  pageSubs.set(pattern, entry);
  if (client.session.state === 'closed') state.textContent = 'subscribes when connected';
  else subscribeOnPage(pattern, entry);
};

// --- Publish and request ----------------------------------------------------------------------
$('pub').onsubmit = (e) => {
  e.preventDefault();
  try {
    client.publish($('pub-subject').value.trim(), $('pub-text').value);
  } catch (err) {
    add('replies', `publish → ${err.code ?? 'error'}: ${err.message}`, 'bad');
  }
};

$('req').onsubmit = async (e) => {
  e.preventDefault();
  const subject = $('req-subject').value.trim();
  const started = performance.now();
  try {
    const reply = await client.request(subject, $('req-text').value, { timeoutMs: Number($('req-timeout').value) || 1000 });
    add('replies', `${subject} → ${reply.text()} (${Math.round(performance.now() - started)} ms)`, 'in');
  } catch (err) {
    add('replies', `${subject} → ${err.code ?? 'error'}: ${err.message}`, 'bad');
  }
};

// --- Chat -------------------------------------------------------------------------------------
// Who is in the room comes from the server's presence per subject (PRESENCE_SUBJECTS=room.*, as
// npm start sets it): a page is a member while it is subscribed to room.<room>, and leaves when
// it unsubscribes or its session ends, even if the tab crashed. Names: each page says
// {"event":"hello","session","name"} on room.<room> before it subscribes, and again whenever a
// newcomer joins, so every page can name every member. Messages go through the chat component
// (chat.<room>.send re-publishes to room.<room>); without it (no_responders on join) the page
// chats by publishing to room.<room> itself. Without presence on the server, joins, leaves and
// the count come from the chat component's own events.
let chat = null; // { room, nick, viaComponent, presence }
let chatSub = null;
let stopPresence = [];
const names = new Map(); // session id → name (from hello messages)
const members = new Map(); // session id → presence member
const chatLine = (text, cls) => add('chat-lines', text, cls, { atBottom: true });
// The authenticated user (a JWT sub) wins over what a page says about itself.
const nameOf = (m) => m.user ?? names.get(m.session) ?? `guest ${m.session.slice(0, 4)}`;

function renderMembers() {
  $('members').textContent = String(members.size);
  const me = client?.session.session;
  $('member-list').replaceChildren(...[...members.values()].map((m) => {
    const li = document.createElement('li');
    li.textContent = m.session === me ? `${nameOf(m)} (you)` : nameOf(m);
    li.dataset.session = m.session;
    return li;
  }));
}

function sayHello() {
  const me = client.session.session;
  if (!chat || !me) return;
  names.set(me, chat.nick);
  client.publish(`room.${chat.room}`, JSON.stringify({ event: 'hello', session: me, name: chat.nick }));
}

function onRoomEvent(m) {
  let ev;
  try {
    ev = m.json();
  } catch {
    ev = { event: 'message', text: m.text() };
  }
  if (ev.event === 'hello') {
    if (typeof ev.session === 'string' && typeof ev.name === 'string') names.set(ev.session, ev.name.slice(0, 64));
    renderMembers();
    return;
  }
  if (ev.event === 'message') return chatLine(String(ev.text));
  if (chat?.presence) return; // joins, leaves and the count come from presence
  if (typeof ev.members === 'number') $('members').textContent = String(ev.members);
  if (ev.event === 'join') chatLine(`· ${ev.name || 'someone'} joined`);
  else if (ev.event === 'leave') chatLine(`· ${ev.name || 'someone'} left`);
}

/** Presence of the room: listen for joins and leaves before joining, so our own join shows too. */
async function watchRoom(room) {
  const subject = `room.${room}`;
  const onJoin = client.onJoin(subject, (m) => {
    members.set(m.session, m);
    renderMembers();
    chatLine(`· ${nameOf(m)} joined`);
    if (m.session !== client.session.session) sayHello(); // so the newcomer can name us
  });
  const onLeave = client.onLeave(subject, (m) => {
    members.delete(m.session);
    renderMembers();
    chatLine(`· ${nameOf(m)} left`);
  });
  stopPresence = [onJoin, onLeave];
  try {
    await Promise.all([onJoin.ready, onLeave.ready]);
    return true;
  } catch {
    for (const stop of stopPresence) stop();
    stopPresence = [];
    return false; // presence is not kept here: the chat component's events tell joins and leaves
  }
}

/** Who is in the room now (after joining, and after a reconnect that may have missed events). */
async function loadMembers() {
  if (!chat?.presence) return;
  try {
    const p = await client.presence(`room.${chat.room}`);
    members.clear();
    for (const m of p.members) members.set(m.session, m);
    renderMembers();
  } catch {
    // disconnected meanwhile: the next session loads them again
  }
}

function leaveRoom() {
  if (chat?.viaComponent && client?.session.state === 'open') client.publish(`chat.${chat.room}.leave`, chat.nick);
  chatSub?.();
  chatSub = null;
  for (const stop of stopPresence) stop();
  stopPresence = [];
  members.clear();
  renderMembers();
}

async function joinRoom(room, nick) {
  chat = { room, nick, viaComponent: true, presence: false };
  const mine = chat;
  $('chat-room').textContent = room;
  try {
    await client.ready();
  } catch {
    return; // closed before it opened
  }
  mine.presence = await watchRoom(room);
  if (chat !== mine) return;
  sayHello();
  chatSub = client.subscribe(`room.${room}`, onRoomEvent);
  await chatSub.ready.catch(() => {});
  void loadMembers();
  try {
    // A cold server builds or loads the component first: give it time.
    const r = await client.request(`chat.${room}.join`, nick, { timeoutMs: 10_000 });
    if (!mine.presence) $('members').textContent = String(r.json().members);
  } catch (err) {
    if (err.code === 'no_responders') {
      mine.viaComponent = false;
      chatLine(`· joined ${room} (no chat component: messages go straight to room.${room})`);
    } else if (err.code !== 'closed' && err.code !== 'disconnected') {
      chatLine(`· could not join ${room}: ${err.code}: ${err.message}`, 'bad');
    }
  }
}

$('chat-join').onsubmit = (e) => {
  e.preventDefault();
  const room = $('room').value.trim() || 'lobby';
  const nick = $('nick').value.trim() || chat?.nick || `guest-${Math.random().toString(36).slice(2, 6)}`;
  $('nick').value = nick;
  if (chat && chat.room === room && chatSub) return;
  leaveRoom();
  void joinRoom(room, nick);
};

$('chat-send').onsubmit = (e) => {
  e.preventDefault();
  if (!chat) return chatLine('· join a room first');
  const text = `${chat.nick}: ${$('chat-text').value}`;
  try {
    if (chat.viaComponent) client.publish(`chat.${chat.room}.send`, text);
    else client.publish(`room.${chat.room}`, JSON.stringify({ event: 'message', text }));
    $('chat-text').value = '';
  } catch (err) {
    chatLine(`· not sent: ${err.code ?? 'error'}: ${err.message}`, 'bad');
  }
};

// --- Connection -------------------------------------------------------------------------------
$('toggle').onclick = () => {
  if (client.session.state === 'closed') return start();
  // Say goodbye to the room first, so its member count goes down.
  leaveRoom();
  client.close();
};
addEventListener('pagehide', () => leaveRoom());

start();

async function refreshCount() {
  try {
    $('count').textContent = (await (await fetch('/healthz')).json()).sessions;
  } catch {
    $('count').textContent = '?';
  }
}
refreshCount();
setInterval(refreshCount, 2000);
