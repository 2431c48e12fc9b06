/*
 * console.js: the page logic of the soketi-rs live debug console (served at /console/console.js,
 * loaded by the page at GET /console after /console/crypto.js). Classic script, no framework.
 *
 * Credentials come from the fragment, #app=APP_ID&key=APP_KEY&secret=APP_SECRET (key optional:
 * it is then looked up with GET /console/key). The secret never leaves the browser: requests
 * carry Pusher HTTP API signatures (auth_key, auth_timestamp, auth_version=1.0, body_md5 for a
 * body, auth_signature = hex HMAC-SHA256 of "METHOD\nPATH\nsorted query").
 *
 * The page reads the signed stream GET /apps/APP_ID/console (text/event-stream, one JSON object
 * per `data:` block) with fetch(), so that it sees the status code, and re-signs on every
 * reconnection. It shows the lines in a log (newest on top, at most 1000 in the DOM), counters
 * from `stats` lines, a chart of events per second, and a form that publishes through
 * POST /apps/APP_ID/events. Every string from the network reaches the DOM through textContent.
 */
(function () {
  'use strict';

  const MAX_LINES = 1000; // log lines kept in the DOM
  const PAUSE_CAP = 1000; // lines kept while paused (the log would drop older ones anyway)
  const RECONNECT_MS = 2000; // after the stream ends or the network fails
  const RETRY_5XX_MS = 5000; // after a 5xx answer
  const STALL_MS = 30000; // no byte for this long (stats arrive every second): the stream is dead
  const CHART_SECONDS = 300;
  const DATA_PREVIEW = 180; // event data longer than this (or multi-line) is collapsed

  const $ = (id) => document.getElementById(id);
  const ConsoleCrypto = globalThis.ConsoleCrypto;

  // ---------------------------------------------------------------- credentials

  // The fragment as {app, key, secret}. Decoded by hand: URLSearchParams would turn '+' into a
  // space, and secrets may contain '+'.
  function readFragment() {
    const fields = {};
    for (const part of location.hash.replace(/^#/, '').split('&')) {
      const eq = part.indexOf('=');
      if (eq <= 0) continue;
      try {
        fields[decodeURIComponent(part.slice(0, eq))] = decodeURIComponent(part.slice(eq + 1));
      } catch (_) {
        // a malformed %-escape: ignore that field
      }
    }
    return { app: fields.app || fields.app_id || '', key: fields.key || '', secret: fields.secret || '' };
  }

  function fragmentOf(c) {
    const parts = [['app', c.app], ['key', c.key], ['secret', c.secret]]
      .filter(([, v]) => v)
      .map(([k, v]) => k + '=' + encodeURIComponent(v));
    return '#' + parts.join('&');
  }

  // ---------------------------------------------------------------- signing

  const unixSeconds = () => Math.floor(Date.now() / 1000);

  // The URL of a request signed like the Pusher SDKs: the string to sign is
  // METHOD\nPATH\nQUERY, QUERY being the params sorted by key as k=v joined with '&' and values
  // not encoded; the URL carries the same params (encoded) and auth_signature.
  // The server's path prefix (SOKETI_PATH_PREFIX), read from where this page was served: every
  // path below is under it, and signatures cover the whole path, as the server checks them.
  const BASE = location.pathname.replace(/\/console\/?$/, '');

  function signedUrl(method, path, params, secret) {
    path = BASE + path;
    const keys = Object.keys(params).sort();
    const toSign = [method, path, keys.map((k) => k + '=' + params[k]).join('&')].join('\n');
    const query = keys.map((k) => k + '=' + encodeURIComponent(params[k])).join('&');
    return path + '?' + query + '&auth_signature=' + ConsoleCrypto.hmacSha256Hex(secret, toSign);
  }

  function apiParams(extra) {
    return Object.assign({ auth_key: creds.key, auth_timestamp: String(unixSeconds()), auth_version: '1.0' }, extra);
  }

  const appPath = (suffix) => '/apps/' + encodeURIComponent(creds.app) + suffix;

  // ---------------------------------------------------------------- HTTP errors

  // The error text of a refused request: the `error` of a JSON body, else the body text.
  async function errorText(res) {
    let text = '';
    try {
      text = await res.text();
    } catch (_) {
      // the body could not be read
    }
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === 'string') return body.error;
      if (body && typeof body.message === 'string') return body.message;
    } catch (_) {
      // not JSON
    }
    text = text.trim();
    if (text.length > 300) text = text.slice(0, 300) + '…';
    return text || res.statusText || 'no details';
  }

  // A note when this computer's clock is far from the server's (signatures carry a timestamp).
  function clockNote(res) {
    const date = Date.parse(res.headers.get('date') || '');
    if (!Number.isFinite(date)) return '';
    const skew = Math.round((Date.now() - date) / 60000);
    if (Math.abs(skew) < 5) return '';
    return ". Note: this computer's clock is " + Math.abs(skew) + ' minutes ' + (skew > 0 ? 'ahead of' : 'behind') + " the server's";
  }

  // What to say about a refused stream or key lookup.
  async function describeRefusal(res) {
    const detail = await errorText(res);
    if (res.status === 401 || res.status === 403) {
      return 'The app id, key or secret is wrong (server said: ' + detail + ')' + clockNote(res);
    }
    if (res.status === 404) return 'No app with id ' + creds.app + ' on this server';
    return 'The server answered ' + res.status + ': ' + detail;
  }

  // ---------------------------------------------------------------- the stream

  let creds = null; // {app, key, secret} of the app shown
  let generation = 0; // bumped by stop() and connect(): stale async work checks it and bails out
  let controller = null;
  let retryTimer = 0;
  let stallTimer = 0;

  function stop() {
    generation++;
    clearTimeout(retryTimer);
    clearTimeout(stallTimer);
    if (controller) controller.abort();
    controller = null;
  }

  function start(next) {
    stop();
    creds = { app: next.app, key: next.key, secret: next.secret };
    $('app-id').textContent = creds.app;
    $('nodes').textContent = '';
    document.title = 'App ' + creds.app + ' · soketi-rs debug console';
    resetView();
    connect();
  }

  function retryIn(ms, level, text) {
    setStatus('reconnecting');
    showMessage(level, text, true);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, ms);
  }

  function lost(my) {
    if (my !== generation) return;
    clearTimeout(stallTimer);
    $('overview').classList.add('stale');
    retryIn(RECONNECT_MS, 'warn', 'disconnected, reconnecting…');
  }

  async function refused(res, my) {
    const text = await describeRefusal(res);
    if (my !== generation) return;
    if (res.status >= 500) {
      retryIn(RETRY_5XX_MS, 'error', text.replace(/\.$/, '') + '. Retrying…');
    } else {
      setStatus('error');
      showMessage('error', text, true);
    }
  }

  // Fetches the app key with GET /console/key, signed without a key. False if it failed (and
  // the failure is handled).
  async function lookupKey(my) {
    const url = signedUrl('GET', '/console/key', { app_id: creds.app, auth_timestamp: String(unixSeconds()) }, creds.secret);
    const res = await fetch(url, { cache: 'no-store', signal: controller.signal });
    if (my !== generation) return false;
    if (!res.ok) {
      await refused(res, my);
      return false;
    }
    const body = await res.json().catch(() => null);
    if (my !== generation) return false;
    if (!body || typeof body.key !== 'string' || !body.key) {
      setStatus('error');
      showMessage('error', 'The server did not return the key of app ' + creds.app, true);
      return false;
    }
    creds.key = body.key;
    return true;
  }

  async function connect() {
    clearTimeout(retryTimer);
    const my = ++generation;
    if (controller) controller.abort();
    controller = new AbortController();
    setStatus('connecting');
    try {
      if (!creds.key && !(await lookupKey(my))) return;
      const url = signedUrl('GET', appPath('/console'), apiParams(), creds.secret);
      const res = await fetch(url, { cache: 'no-store', headers: { Accept: 'text/event-stream' }, signal: controller.signal });
      if (my !== generation) return;
      if (!res.ok) return void (await refused(res, my));
      if (!res.body) {
        setStatus('error');
        return showMessage('error', 'This browser cannot read a streamed response', false);
      }
      setStatus('live');
      showMessage(null);
      $('overview').classList.remove('stale');
      await readStream(res.body, my);
      lost(my);
    } catch (_) {
      lost(my); // a network failure, or the stall watchdog aborted the fetch
    }
  }

  // Reads text/event-stream blocks: `data:` lines are joined, a blank line dispatches, comments
  // (`:` keep-alives) and other fields are ignored.
  async function readStream(body, my) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let data = [];
    const watch = controller;
    const kick = () => {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => watch.abort(), STALL_MS);
    };
    kick();
    for (;;) {
      const { value, done } = await reader.read();
      if (my !== generation) {
        reader.cancel().catch(() => {});
        return;
      }
      if (done) return;
      kick();
      buffer += decoder.decode(value, { stream: true });
      let from = 0;
      let nl;
      while ((nl = buffer.indexOf('\n', from)) >= 0) {
        let line = buffer.slice(from, nl);
        from = nl + 1;
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length) receive(data.join('\n'));
          data = [];
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line[5] === ' ' ? 6 : 5));
        }
      }
      buffer = buffer.slice(from);
    }
  }

  const ARRIVED = Symbol('arrived'); // when a line arrived (JSON.stringify skips symbols)

  function receive(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (_) {
      msg = { type: 'unparsed', text };
    }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) msg = { type: 'unknown', value: msg };
    msg[ARRIVED] = Date.now();
    switch (msg.type) {
      case 'stats':
        setCount('count-connections', msg.connections);
        setCount('count-channels', msg.channels);
        showNodes(msg.nodes);
        return; // counters only: a line a second would bury the log
      case 'hello':
        showNodes(msg.nodes);
        break;
      case 'event':
        countEvent(msg[ARRIVED]);
        break;
    }
    queueLine(msg);
  }

  // The fleet's size in the header, as the server counts the nodes it hears.
  function showNodes(nodes) {
    if (Number.isFinite(nodes)) $('nodes').textContent = nodes === 1 ? '1 node' : nodes + ' nodes';
  }

  // ---------------------------------------------------------------- status and message

  const STATUS_TEXT = {
    idle: 'Not connected',
    connecting: 'Connecting…',
    live: 'Live',
    reconnecting: 'Reconnecting…',
    error: 'Stopped',
  };

  function setStatus(state) {
    const el = $('status');
    el.dataset.state = state;
    el.textContent = STATUS_TEXT[state];
  }

  // level: 'error' | 'warn' | 'info' | null (hide). The actions offer retry and new credentials.
  function showMessage(level, text, withActions) {
    const bar = $('message-bar');
    bar.hidden = !level;
    $('message').textContent = level ? text : '';
    if (level) bar.dataset.level = level;
    $('retry').hidden = !withActions;
    $('message-switch').hidden = !withActions;
  }

  // ---------------------------------------------------------------- counters and chart

  const perSecond = new Map(); // unix second (arrival) -> events

  function countEvent(ms) {
    const second = Math.floor(ms / 1000);
    perSecond.set(second, (perSecond.get(second) || 0) + 1);
  }

  function setCount(id, value) {
    if (typeof value === 'number' && Number.isFinite(value)) $(id).textContent = String(value);
  }

  function tick() {
    const now = Math.floor(Date.now() / 1000);
    for (const second of perSecond.keys()) if (second < now - CHART_SECONDS) perSecond.delete(second);
    $('count-eps').textContent = String(perSecond.get(now - 1) || 0);
    drawChart(now);
  }

  function everySecond() {
    tick();
    setTimeout(everySecond, 1010 - (Date.now() % 1000)); // just after each second turns
  }

  function niceCeiling(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // Bars of the last CHART_SECONDS complete seconds, oldest on the left.
  function drawChart(now) {
    const canvas = $('chart');
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    let peak = 0;
    const values = [];
    for (let i = CHART_SECONDS; i >= 1; i--) {
      const v = perSecond.get(now - i) || 0;
      values.push(v);
      if (v > peak) peak = v;
    }
    $('chart-peak').textContent = peak ? 'peak ' + peak + '/s' : '';

    const axis = 14; // room for the time labels
    const plotTop = 6;
    const plotHeight = height - axis - plotTop;
    const top = niceCeiling(Math.max(peak, 5));

    ctx.font = '10px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    ctx.textBaseline = 'alphabetic';
    // grid: top and middle lines, baseline
    ctx.strokeStyle = '#eceef2';
    ctx.lineWidth = 1;
    for (const f of [0, 0.5]) {
      const y = Math.round(plotTop + plotHeight * f) + 0.5;
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(width, y);
      ctx.stroke();
    }
    ctx.strokeStyle = '#d5d9e0';
    ctx.beginPath();
    ctx.moveTo(0, plotTop + plotHeight + 0.5);
    ctx.lineTo(width, plotTop + plotHeight + 0.5);
    ctx.stroke();

    const step = width / CHART_SECONDS;
    const barWidth = Math.max(1, step - (step > 2.5 ? 1 : 0));
    ctx.fillStyle = '#6a58e4';
    values.forEach((v, i) => {
      if (!v) return;
      const h = Math.max(1, (v / top) * plotHeight);
      ctx.fillRect(i * step, plotTop + plotHeight - h, barWidth, h);
    });

    ctx.fillStyle = '#98a0ae';
    ctx.textAlign = 'left';
    ctx.fillText(top + '/s', 2, plotTop + 9);
    ctx.fillText('5 min ago', 0, height - 2);
    ctx.textAlign = 'center';
    for (const minutes of [4, 3, 2, 1]) ctx.fillText('-' + minutes + ' min', width * (1 - minutes / 5), height - 2);
    ctx.textAlign = 'right';
    ctx.fillText('now', width, height - 2);
  }

  // ---------------------------------------------------------------- the log

  const log = $('log');
  let pending = []; // lines waiting for the next render
  let flushTimer = 0;
  let paused = false;
  let held = []; // lines kept while paused
  let heldCount = 0; // lines received while paused

  function queueLine(msg) {
    if (paused) {
      heldCount++;
      held.push(msg);
      if (held.length > PAUSE_CAP) held.shift();
      showPauseInfo();
      return;
    }
    pending.push(msg);
    if (pending.length > MAX_LINES) pending.splice(0, pending.length - MAX_LINES);
    if (!flushTimer) flushTimer = setTimeout(flush, 50); // batch bursts into one DOM update
  }

  function flush() {
    flushTimer = 0;
    const fragment = document.createDocumentFragment();
    for (let i = pending.length - 1; i >= 0; i--) fragment.appendChild(render(pending[i])); // newest first
    pending = [];
    log.insertBefore(fragment, log.firstChild);
    while (log.childElementCount > MAX_LINES) log.lastElementChild.remove();
  }

  function showPauseInfo() {
    let text = '';
    if (paused) {
      text = heldCount === 1 ? '1 new line' : heldCount + ' new lines';
      if (heldCount > held.length) text += ' (last ' + held.length + ' kept)';
    }
    $('pause-info').textContent = text;
  }

  function setPaused(on) {
    paused = on;
    const button = $('pause');
    button.textContent = on ? 'Resume' : 'Pause';
    button.setAttribute('aria-pressed', String(on));
    if (!on) {
      const lines = held;
      held = [];
      heldCount = 0;
      lines.forEach(queueLine);
    }
    showPauseInfo();
  }

  function clearLog() {
    log.textContent = '';
    pending = [];
    held = [];
    heldCount = 0;
    showPauseInfo();
  }

  function resetView() {
    clearLog();
    perSecond.clear();
    $('count-connections').textContent = '–';
    $('count-channels').textContent = '–';
    $('overview').classList.add('stale');
    tick();
  }

  // ---- filters

  const filters = { channel: '', event: '' };

  function visible(line) {
    if (line.dataset.type === 'dropped') return true;
    for (const field of ['channel', 'event']) {
      const wanted = filters[field];
      if (wanted && !(line.dataset[field] || '').toLowerCase().includes(wanted)) return false;
    }
    return true;
  }

  function applyFilters() {
    filters.channel = $('filter-channel').value.trim().toLowerCase();
    filters.event = $('filter-event').value.trim().toLowerCase();
    for (const line of log.children) line.hidden = !visible(line);
  }

  // ---- rendering (textContent only)

  const text = (v) => (v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v));

  function el(tag, className, content) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function kv(label, value) {
    const span = el('span', 'kv');
    span.append(el('span', 'k', label), el('span', 'v', text(value)));
    return span;
  }

  function pad(n, width) {
    return String(n).padStart(width, '0');
  }

  function clock(ms) {
    const d = new Date(ms);
    return pad(d.getHours(), 2) + ':' + pad(d.getMinutes(), 2) + ':' + pad(d.getSeconds(), 2) + '.' + pad(d.getMilliseconds(), 3);
  }

  // A distinct colour per node, in the order the nodes appear.
  const NODE_COLORS = ['#5846d6', '#1f9d8f', '#d9822b', '#2f7fe0', '#c2417d', '#7a9a23', '#8b5cf6', '#b4543a'];
  const nodeColors = new Map();
  function nodeColor(name) {
    if (!nodeColors.has(name)) nodeColors.set(name, NODE_COLORS[nodeColors.size % NODE_COLORS.length]);
    return nodeColors.get(name);
  }

  // Event data in a block of its own, collapsed if long.
  function dataBlock(value) {
    const s = text(value);
    const block = el('span', 'data block', s);
    if (s.length > DATA_PREVIEW || s.split('\n').length > 3) {
      block.classList.add('long');
      block.title = s.length + ' characters';
      block.addEventListener('click', () => block.classList.toggle('open'));
    }
    return block;
  }

  // The details of each known type; anything else is shown as JSON.
  const DETAILS = {
    hello: (m, d) => {
      d.append(el('span', '', 'Stream open'), kv('app', m.app_id));
      if (Number.isFinite(m.nodes)) d.append(kv('nodes', m.nodes));
    },
    connection: (m, d) => {
      d.append(kv('socket', m.socket_id));
      if (m.origin) d.append(kv('origin', m.origin));
      if (m.ip) d.append(kv('ip', m.ip));
    },
    disconnection: (m, d) => d.append(kv('socket', m.socket_id)),
    subscribed: (m, d) => d.append(el('span', 'chan', text(m.channel)), kv('socket', m.socket_id)),
    unsubscribed: (m, d) => d.append(el('span', 'chan', text(m.channel)), kv('socket', m.socket_id)),
    event: (m, d) => {
      d.append(el('span', 'chan', text(m.channel)), el('span', 'arrow', '›'), el('span', 'ev', text(m.event)));
      if (m.source) d.append(el('span', 'pill', text(m.source)));
      if (m.socket_id) d.append(kv('socket', m.socket_id));
      if (m.data !== undefined) d.append(dataBlock(m.data));
    },
    webhook: (m, d) => {
      d.append(el('span', 'ev', text(m.name)));
      if (m.channel) d.append(el('span', 'chan', text(m.channel)));
      if (m.event) d.append(kv('event', m.event));
      if (m.socket_id) d.append(kv('socket', m.socket_id));
      const status = text(m.status);
      d.append(el('span', /^2\d\d$/.test(status) ? 'pill ok' : 'pill bad', status || 'no status'));
    },
    error: (m, d) => {
      if (m.code !== undefined) d.append(el('span', 'pill bad', text(m.code)));
      d.append(el('span', '', text(m.message)));
      if (m.socket_id) d.append(kv('socket', m.socket_id));
    },
    dropped: (m, d) => {
      const n = Number(m.count);
      d.append(
        el('span', '', (Number.isFinite(n) ? n : '?') + (n === 1 ? ' line dropped' : ' lines dropped')),
        el('span', 'note', 'this page could not keep up with the stream'),
      );
    },
  };

  function render(m) {
    const type = typeof m.type === 'string' && m.type ? m.type : 'unknown';
    const line = el('div', 'line line-' + type.replace(/[^A-Za-z0-9_-]/g, '_'));
    line.setAttribute('data-type', type);
    if (m.channel !== undefined) line.dataset.channel = text(m.channel);
    if (m.event !== undefined) line.dataset.event = text(m.event);

    const time = typeof m.time === 'number' && Number.isFinite(m.time) ? m.time : m[ARRIVED];
    const node = el('span', 'node', text(m.node));
    if (m.node) {
      node.style.setProperty('--node-color', nodeColor(text(m.node)));
      node.title = 'node ' + text(m.node);
    }
    const details = el('div', 'detail');
    if (Object.prototype.hasOwnProperty.call(DETAILS, type)) {
      DETAILS[type](m, details);
    } else {
      details.append(dataBlock(type === 'unparsed' ? m.text : JSON.stringify(m)));
    }
    line.append(el('span', 'ts', clock(time)), node, el('span', 'badge', type), details);
    line.hidden = !visible(line);
    return line;
  }

  // ---------------------------------------------------------------- publish

  function publishResult(state, message) {
    const out = $('pub-result');
    out.dataset.state = state;
    out.textContent = message;
  }

  async function publish(event) {
    event.preventDefault();
    const channel = $('pub-channel').value.trim();
    const name = $('pub-event').value.trim();
    const data = $('pub-data').value;
    if (!creds || !creds.key) return publishResult('error', 'Connect to an app first');
    if (!channel) return publishResult('error', 'Enter a channel name');
    if (!name) return publishResult('error', 'Enter an event name');
    try {
      JSON.parse(data);
    } catch (err) {
      return publishResult('error', 'The data is not valid JSON: ' + err.message);
    }
    // As the Pusher SDKs send it: `data` is a string.
    const body = JSON.stringify({ name, channels: [channel], data });
    const url = signedUrl('POST', appPath('/events'), apiParams({ body_md5: ConsoleCrypto.md5Hex(body) }), creds.secret);
    const button = $('pub-send');
    button.disabled = true;
    publishResult('pending', 'Sending…');
    try {
      const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body, cache: 'no-store' });
      if (res.ok) publishResult('ok', res.status + ' · published');
      else publishResult('error', res.status + ' · ' + (await errorText(res)) + clockNote(res));
    } catch (err) {
      publishResult('error', 'Network error: ' + err.message);
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- credentials dialog

  function showLogin() {
    const c = creds || readFragment();
    $('cred-app').value = c.app || '';
    $('cred-key').value = c.key || '';
    $('cred-secret').value = c.secret || '';
    $('login-error').textContent = '';
    $('login-cancel').hidden = !creds;
    $('login').hidden = false;
    const first = ['cred-app', 'cred-secret'].map($).find((input) => !input.value) || $('cred-app');
    first.focus();
  }

  function submitLogin(event) {
    event.preventDefault();
    const c = { app: $('cred-app').value.trim(), key: $('cred-key').value.trim(), secret: $('cred-secret').value };
    if (!c.app || !c.secret) {
      $('login-error').textContent = 'The app id and the secret are required';
      return;
    }
    history.replaceState(null, '', location.pathname + location.search + fragmentOf(c));
    $('login').hidden = true;
    start(c);
  }

  function onHashChange() {
    const c = readFragment();
    if (!c.app || !c.secret) return showLogin();
    if (creds && c.app === creds.app && c.secret === creds.secret && (!c.key || c.key === creds.key)) return;
    $('login').hidden = true;
    start(c);
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    $('switch-app').addEventListener('click', showLogin);
    $('message-switch').addEventListener('click', showLogin);
    $('retry').addEventListener('click', () => creds && connect());
    $('login-form').addEventListener('submit', submitLogin);
    $('login-cancel').addEventListener('click', () => ($('login').hidden = true));
    $('login').addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && creds) $('login').hidden = true;
    });
    $('filter-channel').addEventListener('input', applyFilters);
    $('filter-event').addEventListener('input', applyFilters);
    $('pause').addEventListener('click', () => setPaused(!paused));
    $('clear').addEventListener('click', clearLog);
    $('pub-form').addEventListener('submit', publish);
    $('pub-data').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('pub-form').requestSubmit();
    });
    window.addEventListener('hashchange', onHashChange);
    if (typeof ResizeObserver === 'function') new ResizeObserver(tick).observe($('chart'));
    showMessage(null);
    everySecond();

    if (!ConsoleCrypto) {
      setStatus('error');
      showMessage('error', 'Could not load /console/crypto.js: requests cannot be signed', false);
      return;
    }
    const c = readFragment();
    if (c.app && c.secret) start(c);
    else showLogin();
  }

  init();
})();
