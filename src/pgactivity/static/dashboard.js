// pgactivity dashboard: the organization's activities, live from the SSE stream.
//
// Everything shown comes from agents and is untrusted: the DOM is built with
// createElement/textContent only, never innerHTML (and the page's
// Content-Security-Policy allows no inline script anyway).
'use strict';

(() => {
  const STREAM_URL = '/api/activity/stream';
  const TOKEN_KEY = 'pgactivity.token';
  const MAX_ACTIVITIES = 500;
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const STATUS_LABELS = { running: 'Running', completed: 'Completed', failed: 'Failed' };

  const $ = (id) => document.getElementById(id);
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };

  const state = {
    token: null,
    source: null, // the current EventSource
    lastSeq: null, // seq of the last event applied: where a reconnect resumes
    organization: null,
    activities: new Map(), // id -> activity (camelCase, as in the snapshot)
    rows: new Map(), // id -> {tr, cells..., detail}
    expanded: new Set(),
    fresh: new Set(), // ids started since the last render (highlighted once)
    dirty: new Set(), // ids changed since the last render; null: all of them
    retryMs: RETRY_MIN_MS,
    retryTimer: null,
    renderQueued: false,
    snapshots: 0,
    filters: { status: '', agentType: '', text: '' },
  };

  // ---- token -------------------------------------------------------------

  const storage = {
    get() {
      try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
    },
    set(value) {
      try { sessionStorage.setItem(TOKEN_KEY, value); } catch { /* private mode: memory only */ }
    },
    clear() {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* ignore */ }
    },
  };

  // Reads ?access_token= once and removes it from the address bar (and history).
  function takeTokenFromUrl() {
    const url = new URL(window.location.href);
    const token = url.searchParams.get('access_token');
    if (token === null) return null;
    url.searchParams.delete('access_token');
    window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash);
    return token.trim() || null;
  }

  function showTokenForm(message) {
    $('board').hidden = state.activities.size === 0;
    $('token-form').hidden = false;
    $('change-token').hidden = true;
    const error = $('token-error');
    error.hidden = !message;
    error.textContent = message || '';
    $('token-input').focus();
  }

  function useToken(token) {
    const changed = token !== state.token;
    state.token = token;
    storage.set(token);
    if (changed) resetData();
    $('token-form').hidden = true;
    $('token-input').value = '';
    $('board').hidden = false;
    $('change-token').hidden = false;
    connect();
  }

  function resetData() {
    state.lastSeq = null;
    state.organization = null;
    state.activities.clear();
    state.expanded.clear();
    state.fresh.clear();
    for (const row of state.rows.values()) {
      row.tr.remove();
      if (row.detail) row.detail.remove();
    }
    state.rows.clear();
    scheduleRender();
  }

  // ---- connection --------------------------------------------------------

  function setConnection(name, label) {
    const conn = $('conn');
    conn.dataset.state = name;
    $('conn-label').textContent = label;
    document.documentElement.dataset.connection = name;
  }

  function closeSource() {
    if (state.source) {
      state.source.close();
      state.source = null;
    }
    if (state.retryTimer) {
      clearTimeout(state.retryTimer);
      state.retryTimer = null;
    }
  }

  function streamUrl() {
    const params = new URLSearchParams({ access_token: state.token });
    // EventSource sends Last-Event-ID itself when it reconnects; this covers a new EventSource.
    if (state.lastSeq !== null) params.set('lastEventId', String(state.lastSeq));
    return `${STREAM_URL}?${params}`;
  }

  function connect() {
    closeSource();
    setConnection(state.lastSeq === null ? 'connecting' : 'reconnecting',
      state.lastSeq === null ? 'Connecting…' : 'Reconnecting…');
    const source = new EventSource(streamUrl());
    state.source = source;
    source.onopen = () => {
      if (state.source !== source) return;
      state.retryMs = RETRY_MIN_MS;
      setConnection('live', 'Live');
    };
    source.onmessage = (message) => {
      if (state.source !== source) return;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      apply(event);
    };
    source.onerror = () => {
      if (state.source !== source) return;
      if (source.readyState === EventSource.CONNECTING) {
        // The stream ended or the network dropped: the browser reconnects by itself,
        // same URL plus a Last-Event-ID header, and the server replays what was missed.
        setConnection('reconnecting', 'Reconnecting…');
        return;
      }
      // CLOSED: the browser gave up (an HTTP error status). Find out why before retrying.
      source.close();
      state.source = null;
      diagnose();
    };
  }

  async function diagnose() {
    setConnection('reconnecting', 'Reconnecting…');
    const controller = new AbortController();
    let status = 0;
    let detail = '';
    try {
      const response = await fetch(streamUrl(), { cache: 'no-store', signal: controller.signal });
      status = response.status;
      if (status !== 200) {
        const body = await response.json().catch(() => null);
        detail = body && body.error && typeof body.error.message === 'string' ? body.error.message : '';
      }
    } catch {
      status = 0; // network error: the server is down or unreachable
    } finally {
      controller.abort();
    }
    if (status === 401 || status === 403) {
      setConnection('unauthorized', 'Unauthorized');
      storage.clear();
      showTokenForm(`The server refused this token${detail ? `: ${detail}` : '.'}`);
      return;
    }
    if (status === 400) {
      setConnection('error', 'Error');
      showTokenForm(detail || 'The server refused the request.');
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    const delay = Math.round(state.retryMs * (0.9 + Math.random() * 0.2));
    state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
    setConnection('reconnecting', `Reconnecting in ${Math.ceil(delay / 1000)}s…`);
    state.retryTimer = setTimeout(() => {
      state.retryTimer = null;
      connect();
    }, delay);
  }

  // ---- events -> activities ----------------------------------------------

  function apply(event) {
    if (!event || typeof event !== 'object') return;
    const data = event.data && typeof event.data === 'object' ? event.data : {};
    switch (event.type) {
      case 'snapshot': {
        // A snapshot is the whole current state (with reset: true after a gap): replace the list.
        state.snapshots += 1;
        state.organization = event.organizationId;
        state.activities.clear();
        for (const activity of Array.isArray(event.activities) ? event.activities : []) {
          if (activity && typeof activity.id === 'string') state.activities.set(activity.id, activity);
        }
        state.dirty = null;
        break;
      }
      case 'agent_started':
        update(event, (a) => {
          a.status = typeof event.status === 'string' ? event.status : 'running'; // an INSERT may be finished
          a.inputData = data.inputData ?? null;
          a.metadata = data.metadata ?? null;
          a.createdAt = event.timestamp;
        }, true);
        break;
      case 'agent_progress':
        update(event, (a) => {
          a.message = data.message ?? null;
          a.progress = data.progress ?? null;
        });
        break;
      case 'agent_completed':
        update(event, (a) => {
          a.status = 'completed';
          a.outputData = data.outputData ?? null;
          a.completedAt = event.timestamp;
        });
        break;
      case 'agent_failed':
        update(event, (a) => {
          a.status = 'failed';
          a.error = data.error ?? null;
          a.completedAt = event.timestamp;
        });
        break;
      default:
        return; // unknown types (future ones) are ignored
    }
    if (Number.isSafeInteger(event.seq)) state.lastSeq = event.seq;
    trim();
    scheduleRender();
  }

  function update(event, change, isNew = false) {
    if (typeof event.activityId !== 'string') return;
    let activity = state.activities.get(event.activityId);
    if (!activity) {
      // Started before the snapshot's window: known from this event on.
      activity = {
        id: event.activityId, organizationId: event.organizationId, status: 'running', progress: null,
        message: null, inputData: null, outputData: null, error: null, metadata: null,
        createdAt: null, updatedAt: null, completedAt: null,
      };
      state.activities.set(activity.id, activity);
    }
    activity.sessionId = event.sessionId ?? null;
    activity.agentType = event.agentType ?? activity.agentType;
    activity.agentName = event.agentName ?? null;
    activity.category = event.category ?? null;
    activity.updatedAt = event.timestamp ?? activity.updatedAt;
    change(activity);
    if (isNew) state.fresh.add(activity.id);
    if (state.dirty) state.dirty.add(activity.id);
  }

  function sortKey(activity) {
    return activity.createdAt || activity.updatedAt || '';
  }

  function newestFirst(a, b) {
    const ka = sortKey(a);
    const kb = sortKey(b);
    if (ka !== kb) return ka < kb ? 1 : -1;
    return a.id < b.id ? 1 : -1;
  }

  function trim() {
    if (state.activities.size <= MAX_ACTIVITIES) return;
    const finished = [...state.activities.values()].filter((a) => a.status !== 'running').sort(newestFirst);
    while (state.activities.size > MAX_ACTIVITIES && finished.length) {
      state.activities.delete(finished.pop().id);
    }
  }

  // ---- rendering ---------------------------------------------------------

  function scheduleRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(() => {
      state.renderQueued = false;
      render();
    });
  }

  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const dateFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

  function parseTime(iso) {
    if (typeof iso !== 'string') return null;
    const ms = Date.parse(iso);
    return Number.isNaN(ms) ? null : ms;
  }

  function formatStarted(iso) {
    const ms = parseTime(iso);
    if (ms === null) return '—';
    const date = new Date(ms);
    return date.toDateString() === new Date().toDateString() ? timeFormat.format(date) : dateFormat.format(date);
  }

  function formatDuration(ms) {
    const clamped = Math.max(0, ms);
    if (clamped < 1000) return `${Math.round(clamped)}ms`;
    const seconds = clamped / 1000;
    if (seconds < 60) return `${seconds.toFixed(1)}s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes}m ${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours}h ${String(minutes % 60).padStart(2, '0')}m`;
    return `${Math.floor(hours / 24)}d ${hours % 24}h`;
  }

  function duration(activity) {
    const start = parseTime(activity.createdAt);
    if (start === null) return '—';
    const end = activity.status === 'running' ? Date.now() : parseTime(activity.completedAt) ?? parseTime(activity.updatedAt);
    return end === null ? '—' : formatDuration(end - start);
  }

  function percent(activity) {
    if (activity.status === 'completed') return 100;
    const value = Number(activity.progress);
    return Number.isFinite(activity.progress) ? Math.min(100, Math.max(0, value)) : null;
  }

  function createRow(id) {
    const tr = el('tr', 'activity');
    tr.dataset.id = id;
    const badge = el('span', 'badge');
    const name = el('div', 'cell-main');
    const kind = el('div', 'cell-sub');
    const fill = el('div', 'fill');
    const bar = el('div', 'bar');
    bar.setAttribute('role', 'progressbar');
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '100');
    bar.append(fill);
    const pct = el('span', 'pct');
    const progress = el('div', 'progress');
    progress.append(bar, pct);
    const message = el('div', 'message');
    const session = el('div', 'session mono');
    const started = el('td', 'started');
    const elapsed = el('td', 'duration');
    const cell = (...children) => {
      const td = el('td');
      td.append(...children);
      return td;
    };
    const sessionCell = cell(session);
    sessionCell.className = 'session-cell';
    tr.append(cell(badge), cell(name, kind), cell(progress), cell(message), sessionCell, started, elapsed);
    tr.addEventListener('click', () => {
      if (window.getSelection && String(window.getSelection()).length) return; // selecting text, not toggling
      if (state.expanded.has(id)) state.expanded.delete(id);
      else state.expanded.add(id);
      scheduleRender();
    });
    return { tr, badge, name, kind, bar, fill, pct, message, session, started, elapsed, detail: null };
  }

  function fillRow(row, a) {
    const status = STATUS_LABELS[a.status] ? a.status : 'running';
    row.tr.dataset.status = status;
    row.badge.className = `badge ${status}`;
    row.badge.textContent = STATUS_LABELS[status];

    row.name.textContent = a.agentName || a.agentType || '—';
    row.name.title = a.agentName || '';
    row.kind.textContent = [a.agentType, a.category].filter(Boolean).join(' · ');

    const pct = percent(a);
    row.fill.className = `fill ${status}`;
    row.fill.style.width = `${pct ?? 0}%`;
    row.pct.textContent = pct === null ? '—' : `${pct}%`;
    if (pct === null) row.bar.removeAttribute('aria-valuenow');
    else row.bar.setAttribute('aria-valuenow', String(pct));

    const text = status === 'failed' && a.error ? a.error : a.message;
    row.message.textContent = text || '—';
    row.message.title = text || '';
    row.message.className = status === 'failed' ? 'message failed' : 'message';

    row.session.textContent = a.sessionId || '—';
    row.session.title = a.sessionId || '';
    row.started.textContent = formatStarted(a.createdAt);
    const ms = parseTime(a.createdAt);
    row.started.title = ms === null ? '' : fullFormat.format(new Date(ms));
    row.elapsed.textContent = duration(a);
  }

  function json(value) {
    if (value === null || value === undefined) return '—';
    try {
      return JSON.stringify(value, null, 2);
    } catch {
      return String(value);
    }
  }

  function detailRow(row, a) {
    if (!row.detail) {
      row.detail = el('tr', 'detail');
      row.detail.dataset.id = a.id;
    }
    const td = el('td');
    td.colSpan = 7;
    const grid = el('dl', 'detail-grid');
    const fields = [
      ['Activity', a.id], ['Session', a.sessionId], ['Agent type', a.agentType], ['Category', a.category],
      ['Created', a.createdAt], ['Updated', a.updatedAt], ['Completed', a.completedAt], ['Status', a.status],
    ];
    for (const [label, value] of fields) grid.append(el('dt', null, label), el('dd', 'mono', value ?? '—'));
    const blocks = el('div', 'detail-json');
    const sections = [['Input', a.inputData], ['Metadata', a.metadata], ['Output', a.outputData]];
    if (a.error) sections.push(['Error', a.error]);
    for (const [label, value] of sections) {
      const block = el('div');
      block.append(el('h3', null, label), el('pre', 'mono', typeof value === 'string' ? value : json(value)));
      blocks.append(block);
    }
    td.append(grid, blocks);
    row.detail.replaceChildren(td);
    return row.detail;
  }

  function matches(a) {
    const f = state.filters;
    if (f.status && a.status !== f.status) return false;
    if (f.agentType && a.agentType !== f.agentType) return false;
    if (f.text) {
      const haystack = [a.agentName, a.agentType, a.message, a.error, a.sessionId, a.category, a.id]
        .filter(Boolean).join('\n').toLowerCase();
      if (!haystack.includes(f.text)) return false;
    }
    return true;
  }

  function renderAgentTypes() {
    const select = $('filter-agent');
    const types = [...new Set([...state.activities.values()].map((a) => a.agentType).filter(Boolean))].sort();
    if (state.filters.agentType && !types.includes(state.filters.agentType)) types.push(state.filters.agentType);
    const current = [...select.options].slice(1).map((o) => o.value);
    if (current.length === types.length && current.every((t, i) => t === types[i])) return;
    const options = [el('option', null, 'All')];
    options[0].value = '';
    for (const type of types) {
      const option = el('option', null, type);
      option.value = type;
      options.push(option);
    }
    select.replaceChildren(...options);
    select.value = state.filters.agentType;
  }

  function render() {
    const all = [...state.activities.values()];
    const counts = { running: 0, completed: 0, failed: 0 };
    for (const a of all) if (a.status in counts) counts[a.status] += 1;
    $('count-all').textContent = String(all.length);
    for (const status of Object.keys(counts)) $(`count-${status}`).textContent = String(counts[status]);
    for (const button of document.querySelectorAll('.stat')) {
      button.setAttribute('aria-pressed', String(button.dataset.status === state.filters.status));
    }
    renderAgentTypes();

    if (state.organization) {
      $('org').hidden = false;
      $('org-name').textContent = state.organization;
      $('org-name').title = state.organization;
    }
    $('last-seq').textContent = state.lastSeq === null ? '–' : `#${state.lastSeq}`;
    document.documentElement.dataset.lastSeq = state.lastSeq === null ? '' : String(state.lastSeq);
    document.documentElement.dataset.snapshots = String(state.snapshots);

    const visible = all.filter(matches).sort(newestFirst);
    // Rows are kept for visible activities only (a hidden row would go stale); they are cheap to rebuild.
    const shown = new Set(visible.map((a) => a.id));
    for (const [id, row] of state.rows) {
      if (!shown.has(id)) {
        row.tr.remove();
        if (row.detail) row.detail.remove();
        state.rows.delete(id);
      }
    }
    for (const id of state.expanded) if (!state.activities.has(id)) state.expanded.delete(id);
    const tbody = $('rows');
    let index = 0;
    const place = (node) => {
      const at = tbody.children[index];
      if (at !== node) tbody.insertBefore(node, at || null);
      index += 1;
    };
    for (const a of visible) {
      let row = state.rows.get(a.id);
      const changed = !row || !state.dirty || state.dirty.has(a.id);
      if (!row) {
        row = createRow(a.id);
        state.rows.set(a.id, row);
      }
      if (changed) fillRow(row, a);
      if (state.fresh.has(a.id)) {
        row.tr.classList.add('fresh');
        setTimeout(() => row.tr.classList.remove('fresh'), 1700);
      }
      place(row.tr);
      row.tr.setAttribute('aria-expanded', String(state.expanded.has(a.id)));
      if (state.expanded.has(a.id)) place(changed || !row.detail ? detailRow(row, a) : row.detail);
      else if (row.detail) {
        row.detail.remove();
        row.detail = null;
      }
    }
    state.fresh.clear();
    state.dirty = new Set();
    while (tbody.children.length > index) tbody.lastElementChild.remove();

    const empty = $('empty');
    empty.hidden = visible.length > 0;
    empty.textContent = all.length ? 'No activity matches the filters.' : 'No activities yet. They appear here as agents report them.';
    $('shown').textContent = visible.length === all.length ? `${all.length} activities` : `${visible.length} of ${all.length} activities`;
  }

  function tick() {
    for (const [id, row] of state.rows) {
      const a = state.activities.get(id);
      if (a && a.status === 'running') row.elapsed.textContent = duration(a);
    }
  }

  // ---- wiring ------------------------------------------------------------

  function setFilter(name, value) {
    state.filters[name] = value;
    if (name === 'status') $('filter-status').value = value;
    scheduleRender();
  }

  function init() {
    $('token-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const token = $('token-input').value.trim();
      if (token) useToken(token);
    });
    $('change-token').addEventListener('click', () => {
      closeSource();
      storage.clear();
      setConnection('idle', 'Not connected');
      showTokenForm('');
    });
    $('filter-status').addEventListener('change', (e) => setFilter('status', e.target.value));
    $('filter-agent').addEventListener('change', (e) => setFilter('agentType', e.target.value));
    $('filter-text').addEventListener('input', (e) => setFilter('text', e.target.value.trim().toLowerCase()));
    for (const button of document.querySelectorAll('.stat')) {
      button.addEventListener('click', () => setFilter('status', button.dataset.status || ''));
    }
    window.addEventListener('online', () => {
      if (!state.source && state.token && state.retryTimer) {
        clearTimeout(state.retryTimer);
        state.retryTimer = null;
        connect();
      }
    });
    setInterval(tick, 1000);

    const token = takeTokenFromUrl() || storage.get();
    render();
    if (token) useToken(token);
    else showTokenForm('');
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
