// The demo page: every control uses the wsbridge SDK, served by the gateway at /sdk/client.js.
import { connect } from '/sdk/client.js';

const $ = (id) => document.getElementById(id);
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const add = (list, text, cls) => {
  const li = document.createElement('li');
  li.textContent = text;
  if (cls) li.className = cls;
  $(list).prepend(li);
  while ($(list).children.length > 200) $(list).lastChild.remove();
};

let client;
let chatOff = null;
function start() {
  client = connect(wsUrl, {
    onFrame: (dir, frame) => add('frames', `${dir === 'in' ? '←' : '→'} ${JSON.stringify(frame)}`, dir),
  });
  client.onSessionChange((s) => {
    $('state').textContent = s.state;
    $('state').className = `badge ${s.state === 'open' ? 'ok' : s.state === 'closed' ? 'bad' : ''}`;
    $('session').textContent = s.session ?? '–';
    $('toggle').textContent = s.state === 'closed' ? 'Connect' : 'Disconnect';
  });
  client.onDirect((m) => add('messages', `${m.subject}: ${m.text()}`));
}
start();

$('toggle').onclick = () => {
  if (client.session.state === 'closed') start();
  else client.close();
};

$('sub').onsubmit = (e) => {
  e.preventDefault();
  const pattern = $('sub-pattern').value.trim();
  const off = client.subscribe(pattern, (m) => add('messages', `${m.subject}: ${m.text()}`));
  const li = document.createElement('li');
  li.textContent = `${pattern} `;
  const b = document.createElement('button');
  b.textContent = 'unsubscribe';
  b.onclick = () => { off(); li.remove(); };
  li.append(b);
  $('subs').append(li);
};

$('pub').onsubmit = (e) => {
  e.preventDefault();
  client.publish($('pub-subject').value.trim(), $('pub-text').value);
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

// Chat: the chat component (chat.<room>.join|send) re-publishes to room.<room>. Without it the
// page still chats, by publishing straight to room.<room>.
let room = null;
let nick = '';
$('chat-join').onsubmit = async (e) => {
  e.preventDefault();
  room = $('room').value.trim() || 'lobby';
  nick = $('nick').value.trim() || `guest-${Math.random().toString(36).slice(2, 6)}`;
  chatOff?.();
  chatOff = client.subscribe(`room.${room}`, (m) => {
    let ev;
    try { ev = m.json(); } catch { ev = { event: 'message', text: m.text() }; }
    if (ev.event === 'message') add('chat-lines', ev.text);
    else add('chat-lines', `· ${ev.event} (${ev.members} in the room)`);
  });
  try {
    const r = await client.request(`chat.${room}.join`, '', { timeoutMs: 500 });
    add('chat-lines', `· joined ${room}: ${r.json().members} member(s)`);
  } catch {
    add('chat-lines', `· joined ${room} (no chat component: messages go straight to room.${room})`);
    room = `!${room}`;
  }
};
$('chat-send').onsubmit = (e) => {
  e.preventDefault();
  if (!room) return add('chat-lines', '· join a room first');
  const text = `${nick}: ${$('chat-text').value}`;
  if (room.startsWith('!')) client.publish(`room.${room.slice(1)}`, JSON.stringify({ event: 'message', text }));
  else client.publish(`chat.${room}.send`, text);
  $('chat-text').value = '';
};

async function refreshCount() {
  try {
    $('count').textContent = (await (await fetch('/healthz')).json()).sessions;
  } catch { $('count').textContent = '?'; }
}
refreshCount();
setInterval(refreshCount, 2000);
