// The admin page: the operator API (/api/) seen live. The admin token is asked for on the page,
// kept in this page's memory only (never in a URL, cookie or storage) and sent in the
// Authorization header. Everything a client controls (subjects, addresses) is shown as text,
// never as HTML.
const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;
const POINTS = 60; // two minutes of history per plot

let token = null;
let timer = null;
let previous = null; // the last stats snapshot, for rates
let sessions = [];

// ── API ──────────────────────────────────────────────────────────────────────────────────
async function api(method, path) {
  const res = await fetch(path, { method, headers: { authorization: `Bearer ${token}` }, cache: 'no-store', credentials: 'omit' });
  if (res.status === 401) throw Object.assign(new Error('the token was refused'), { status: 401 });
  if (!res.ok && res.status !== 204) {
    let msg = `HTTP ${res.status}`;
    try {
      const e = await res.json();
      if (e.error) msg = `${e.error.code}: ${e.error.message}`;
    } catch { /* no JSON body */ }
    throw Object.assign(new Error(msg), { status: res.status });
  }
  return res.status === 204 ? null : res.json();
}

function setStatus(text, cls) {
  const s = $('status');
  s.textContent = text;
  s.className = `badge ${cls ?? ''}`;
}

// ── plots ────────────────────────────────────────────────────────────────────────────────
const PLOTS = [
  { key: 'sessions', label: 'sessions', unit: '' },
  { key: 'msgsIn', label: 'messages in/s', unit: '/s' },
  { key: 'msgsOut', label: 'messages out/s', unit: '/s' },
  { key: 'bytesOut', label: 'bytes out/s', unit: 'B/s' },
  { key: 'errors', label: 'errors/s', unit: '/s' },
  { key: 'calls', label: 'handler calls/s', unit: '/s' },
  { key: 'callErrors', label: 'handler errors/s', unit: '/s' },
];
const series = new Map(PLOTS.map((p) => [p.key, []]));

function buildPlots() {
  const box = $('plots');
  box.replaceChildren();
  for (const p of PLOTS) {
    const fig = document.createElement('figure');
    fig.dataset.plot = p.key;
    const canvas = document.createElement('canvas');
    canvas.width = 360;
    canvas.height = 88;
    const cap = document.createElement('figcaption');
    const name = document.createElement('span');
    name.textContent = p.label;
    const value = document.createElement('b');
    value.textContent = '–';
    cap.append(name, value);
    fig.append(canvas, cap);
    box.append(fig);
  }
}

function fmt(n) {
  if (!Number.isFinite(n)) return '–';
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function drawPlot(key) {
  let values = series.get(key);
  const fig = document.querySelector(`figure[data-plot="${key}"]`);
  if (!fig) return;
  fig.querySelector('b').textContent = values.length ? fmt(values[values.length - 1]) : '–';
  fig.dataset.points = String(values.length);
  const c = fig.querySelector('canvas');
  const g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = '#e4e8ee';
  g.beginPath();
  g.moveTo(0, c.height - 1);
  g.lineTo(c.width, c.height - 1);
  g.stroke();
  if (values.length === 0) return;
  if (values.length === 1) values = [values[0], values[0]];
  const max = Math.max(1, ...values);
  // Spread over the full width until the history is full, then scroll.
  const step = c.width / (values.length - 1);
  const x0 = 0;
  const y = (v) => c.height - 4 - (v / max) * (c.height - 8);
  g.beginPath();
  values.forEach((v, i) => (i === 0 ? g.moveTo(x0, y(v)) : g.lineTo(x0 + i * step, y(v))));
  g.strokeStyle = '#06c';
  g.lineWidth = 2;
  g.stroke();
  g.lineTo(x0 + (values.length - 1) * step, c.height);
  g.lineTo(x0, c.height);
  g.closePath();
  g.fillStyle = 'rgba(0, 102, 204, .12)';
  g.fill();
}

function record(stats, at) {
  const prev = previous;
  previous = { stats, at };
  const push = (key, v) => {
    const s = series.get(key);
    s.push(v);
    if (s.length > POINTS) s.shift();
  };
  push('sessions', stats.sessions);
  if (prev) {
    const dt = Math.max(0.001, (at - prev.at) / 1000);
    const rate = (now, before) => Math.max(0, (now - before) / dt);
    push('msgsIn', rate(stats.traffic?.messagesIn ?? 0, prev.stats.traffic?.messagesIn ?? 0));
    push('msgsOut', rate(stats.traffic?.messagesOut ?? 0, prev.stats.traffic?.messagesOut ?? 0));
    push('bytesOut', rate(stats.traffic?.bytesOut ?? 0, prev.stats.traffic?.bytesOut ?? 0));
    push('errors', rate(stats.hub.protocolErrors, prev.stats.hub.protocolErrors));
    push('calls', rate(stats.handlers.calls, prev.stats.handlers.calls));
    push('callErrors', rate(stats.handlers.errors, prev.stats.handlers.errors));
  }
  for (const p of PLOTS) drawPlot(p.key);
  return prev;
}

// ── tables ───────────────────────────────────────────────────────────────────────────────
function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = cell('none', 'hint');
    td.colSpan = document.querySelectorAll(`#${tableId} thead th`).length;
    tr.append(td);
    body.append(tr);
  }
}

function since(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function renderSessions() {
  const q = $('filter').value.trim().toLowerCase();
  const shown = sessions.filter((s) => !q || [s.id, s.node ?? '', s.remote_address, s.transport ?? '', s.protocol, ...s.subscriptions].some((v) => String(v).toLowerCase().includes(q)));
  $('session-count').textContent = q ? `${shown.length} of ${sessions.length}` : String(sessions.length);
  fill('sessions', shown.map((s) => {
    const tr = document.createElement('tr');
    tr.dataset.session = s.id;
    const id = document.createElement('td');
    const code = document.createElement('code');
    code.textContent = s.id;
    id.append(code);
    const close = document.createElement('td');
    const b = document.createElement('button');
    b.textContent = 'close';
    b.title = `close session ${s.id} (1000)`;
    b.onclick = () => closeSession(s.id, b);
    close.append(b);
    tr.append(id, cell(s.node ?? 'this node'), cell(`${s.transport ?? 'websocket'} · ${s.protocol}`), cell(s.remote_address), cell(since(s.connected_at)),
      cell(s.subscriptions.join(', ') || '–'), cell(`${s.counters.messagesIn} / ${s.counters.messagesOut}`, 'num'), cell(fmt(s.queued_bytes), 'num'), close);
    return tr;
  }));
}

function renderSubjects() {
  const by = new Map();
  for (const s of sessions) {
    for (const pattern of s.subscriptions) {
      const e = by.get(pattern) ?? { sessions: 0, nodes: new Set() };
      e.sessions++;
      e.nodes.add(s.node ?? 'this node');
      by.set(pattern, e);
    }
  }
  const rows = [...by].sort((a, b) => b[1].sessions - a[1].sessions || a[0].localeCompare(b[0])).map(([pattern, e]) => {
    const tr = document.createElement('tr');
    tr.dataset.subject = pattern;
    const p = document.createElement('td');
    const code = document.createElement('code');
    code.textContent = pattern;
    p.append(code);
    tr.append(p, cell(String(e.sessions), 'num'), cell(String(e.nodes.size), 'num'));
    return tr;
  });
  fill('subjects', rows);
}

function renderLinks(stats) {
  fill('links', (stats.links ?? []).map((l) => {
    const tr = document.createElement('tr');
    const state = cell(l.state, `badge ${l.state === 'open' ? 'ok' : l.state === 'closed' ? 'bad' : 'warn'}`);
    tr.append(cell(l.url), state, cell(String(l.connects), 'num'), cell(String(l.received + (l.receivedRaw ?? 0)), 'num'), cell(String(l.sent), 'num'), cell(String(l.droppedOffline), 'num'));
    return tr;
  }));
}

function renderComponents(stats, prev) {
  const dt = prev ? Math.max(0.001, (previous.at - prev.at) / 1000) : 0;
  fill('components', Object.entries(stats.components ?? {}).map(([id, c]) => {
    const before = prev?.stats.components?.[id];
    const failures = (x) => x.errors + x.traps + x.timeouts + x.rejected;
    const rate = (now, then) => (before && dt ? fmt(Math.max(0, (now - then) / dt)) : '–');
    const tr = document.createElement('tr');
    tr.dataset.component = id;
    tr.append(cell(id), cell(`${c.in_flight ?? 0} / ${c.pool_size}`, 'num'), cell(String(c.queued ?? 0), 'num'),
      cell(rate(c.calls, before?.calls), 'num'), cell(rate(failures(c), before ? failures(before) : 0), 'num'),
      cell(String(c.calls), 'num'), cell(String(c.errors), 'num'), cell(String(c.traps), 'num'), cell(String(c.timeouts), 'num'), cell(String(c.rejected), 'num'));
    return tr;
  }));
}

let presenceSubject = '';

async function renderPresence() {
  if (!presenceSubject) return;
  try {
    const r = await api('GET', `/api/presence/${encodeURIComponent(presenceSubject)}`);
    fill('presence', r.members.map((m) => {
      const tr = document.createElement('tr');
      tr.dataset.session = m.session;
      tr.append(cell(m.session), cell(m.user ?? '–'), cell(m.info === undefined ? '–' : JSON.stringify(m.info)), cell(m.node));
      return tr;
    }));
    $('presence-note').textContent = `${r.members.length}${r.truncated ? '+' : ''} member(s) of ${r.subject}`;
  } catch (e) {
    if (e.status === 401) throw e;
    fill('presence', []);
    $('presence-note').textContent = `${presenceSubject}: ${e.message}`;
  }
}

// ── actions ──────────────────────────────────────────────────────────────────────────────
async function closeSession(id, button) {
  button.disabled = true;
  try {
    await api('DELETE', `/api/sessions/${encodeURIComponent(id)}`);
    sessions = sessions.filter((s) => s.id !== id);
    renderSessions();
    renderSubjects();
    setStatus(`closed ${id}`, 'ok');
  } catch (e) {
    button.disabled = false;
    setStatus(`close failed: ${e.message}`, 'bad');
  }
}

async function refresh() {
  try {
    const [stats, list] = await Promise.all([api('GET', '/api/stats'), api('GET', '/api/sessions').catch((e) => (e.status === 404 ? { sessions: [] } : Promise.reject(e)))]);
    sessions = list.sessions;
    const prev = record(stats, performance.now());
    renderSessions();
    renderSubjects();
    renderLinks(stats);
    renderComponents(stats, prev);
    await renderPresence();
    setStatus(`live · ${new Date().toLocaleTimeString()}`, 'ok');
  } catch (e) {
    if (e.status === 401) return signOut('token refused');
    setStatus(`refresh failed: ${e.message}`, 'bad');
  }
}

function signIn(t) {
  token = t;
  previous = null;
  for (const s of series.values()) s.length = 0;
  $('login').hidden = true;
  $('logout').hidden = false;
  $('app').hidden = false;
  buildPlots();
  void refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

function signOut(why) {
  token = null;
  clearInterval(timer);
  $('app').hidden = true;
  $('login').hidden = false;
  $('logout').hidden = true;
  $('token').value = '';
  setStatus(why, why === 'signed out' ? '' : 'bad');
}

$('login').onsubmit = (e) => {
  e.preventDefault();
  const t = $('token').value;
  if (t) signIn(t);
};
$('logout').onclick = () => signOut('signed out');
$('filter').oninput = () => renderSessions();
$('presence-form').onsubmit = (e) => {
  e.preventDefault();
  presenceSubject = $('presence-subject').value.trim();
  void renderPresence().catch((err) => (err.status === 401 ? signOut('token refused') : undefined));
};
