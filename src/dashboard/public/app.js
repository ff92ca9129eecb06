// The dashboard page: plain ES module, no build step. Everything shown comes from the read-only
// JSON API of the same server; text from the repository (paths, messages) is only ever set as
// textContent, never as HTML.
import uPlot from '/vendor/uPlot.esm.js';

const PAGE = 50;
const BAND_WINDOW = 30;
const BAND_MIN = 5;

const state = {
  offset: 0,
  total: 0,
  selected: null,
  timeline: null,
  metric: 'bytesIn',
  chart: null,
  treeOf: null,
  // The fleet overview (/api/groups) and the group whose timeline and backups are shown.
  fleet: null,
  repo: 0,
  group: null,
  costOf: null,
  allGroups: false,
};

/** Query string naming the selected repository (and, with group, the selected group). */
function repoQuery(group = false) {
  const q = new URLSearchParams({ repo: String(state.repo) });
  if (group && state.group) q.set('group', state.group);
  return q.toString();
}

// ---------------------------------------------------------------- helpers

/** Element builder: h('td', { class: 'num' }, 'text', childNode, …). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Children for replaceChildren: arrays flattened, null/false dropped, strings as text. */
function kids(...children) {
  return children
    .flat(Infinity)
    .filter((c) => c !== undefined && c !== null && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

function bytes(n) {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(Math.abs(v) < 10 ? 2 : Math.abs(v) < 100 ? 1 : 0)} ${units[i]}`;
}

function duration(ms) {
  if (!Number.isFinite(ms)) return '?';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s - m * 60)).padStart(2, '0')}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h${String(m - hr * 60).padStart(2, '0')}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

const utc = (iso) =>
  iso
    ? iso
        .replace('T', ' ')
        .replace(/\.\d+Z$/, '')
        .replace(/Z$/, '')
    : '';
const shortId = (id) => id.slice(-8);
/** A long path by its end, which names it best ("…/office/team-share"); the whole path goes in a title. */
const pathTail = (p, max = 34) => (p.length <= max ? p : `…${p.slice(p.length - max + 1)}`);
/** Dollars: cents for ordinary amounts, two significant digits for fractions of a cent (tiny test repositories). */
const money = (n, cur = 'USD') => {
  if (!Number.isFinite(n)) return '?';
  const small = n !== 0 && Math.abs(n) < 0.01;
  return new Intl.NumberFormat('en', {
    style: 'currency',
    currency: cur,
    ...(small ? { maximumSignificantDigits: 2 } : { maximumFractionDigits: Math.abs(n) < 10 ? 2 : 0 }),
  }).format(n);
};

async function api(path) {
  const r = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function showError(e) {
  const p = document.getElementById('error');
  p.hidden = false;
  p.textContent = `Could not load: ${e.message}`;
}

function notConfigured(panel) {
  if (panel.status === 'error') return h('div', { class: 'notconf' }, h('strong', {}, 'Error: '), panel.error);
  return h('div', { class: 'notconf' }, h('strong', {}, 'Not configured. '), panel.reason);
}

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// ---------------------------------------------------------------- theme

const THEMES = ['auto', 'light', 'dark'];
function applyTheme(t) {
  if (t === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  document.getElementById('theme').textContent = `◐ ${t}`;
}
function initTheme() {
  let t = localStorage.getItem('s3backup-theme') || 'auto';
  if (!THEMES.includes(t)) t = 'auto';
  applyTheme(t);
  document.getElementById('theme').addEventListener('click', () => {
    t = THEMES[(THEMES.indexOf(t) + 1) % THEMES.length];
    localStorage.setItem('s3backup-theme', t);
    applyTheme(t);
    drawChart();
  });
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => drawChart());
}

// ---------------------------------------------------------------- status cards

function card(label, value, sub, cls = '', id = undefined) {
  return h(
    'div',
    { class: `card ${cls}`, id },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value' }, value),
    sub ? h('div', { class: 'sub' }, sub) : null,
  );
}

/** The group as the page names it: "host: /a, /b [tags]". */
function groupName(g) {
  return `${g.host}: ${g.sources.join(', ') || '(no sources)'}${g.tags?.length ? ` [${g.tags.join(',')}]` : ''}`;
}

function freshnessText(f) {
  if (!f.newest) return { value: 'none yet', sub: 'no backup of this group' };
  const limit = f.maxAgeMs
    ? `expected every ${duration(f.maxAgeMs)} at most (${f.basis === 'setting' ? '--max-age' : f.basis === 'schedule' ? 'from the schedule' : "twice this group's usual gap"})`
    : 'too few backups to know its rhythm';
  return { value: `${duration(f.ageMs)} ago`, sub: `${utc(f.newest.endTime)} UTC · ${limit}` };
}

async function loadSummary() {
  const s = await api(`/api/summary?${repoQuery()}`);
  const groups = state.fleet.groups;
  const stale = groups.filter((g) => g.freshness.status === 'stale');
  const g = selectedGroup();
  const cards = [];
  if (g) {
    const f = freshnessText(g.freshness);
    cards.push(
      card(
        'Newest backup of this group',
        f.value,
        f.sub,
        g.freshness.status === 'stale' ? 'bad' : g.freshness.status === 'ok' ? 'ok' : '',
        'freshness',
      ),
    );
  } else cards.push(card('Newest backup', 'none yet', 'no backup in this repository', 'bad', 'freshness'));
  // The fleet is stale when one of its groups is, each judged on its own rhythm.
  const fleetStatus = stale.length ? 'stale' : groups.some((x) => x.freshness.status === 'ok') ? 'ok' : 'unknown';
  document.getElementById('status').dataset.freshness = fleetStatus;
  cards.push(
    card(
      'Groups',
      stale.length ? `${stale.length} of ${groups.length} stale` : `${groups.length} up to date`,
      stale.length
        ? `stopped: ${stale.map(groupName).join('; ')}`
        : `${groups.length} group${groups.length === 1 ? '' : 's'} in ${state.fleet.repositories.length} repositor${state.fleet.repositories.length === 1 ? 'y' : 'ies'}`,
      stale.length ? 'bad' : fleetStatus === 'ok' ? 'ok' : '',
      'fleet-card',
    ),
  );
  cards.push(
    card(
      'Last success',
      s.lastSuccess ? utc(s.lastSuccess.time) : '—',
      s.lastSuccess ? `backup ${shortId(s.lastSuccess.id)}` : '',
      s.lastSuccess ? 'ok' : '',
    ),
  );
  const lf = s.lastFailure;
  if (lf.status === 'ok') {
    cards.push(
      lf.data
        ? card('Last failure', utc(lf.data.time), lf.data.error, 'bad')
        : card('Last failure', 'none recorded', 'in the run history', 'ok'),
    );
  } else {
    cards.push(card('Last failure', '—', lf.status === 'error' ? lf.error : lf.reason, 'warn'));
  }
  cards.push(
    card(
      'Backups',
      String(s.backups),
      `${bytes(s.storedBytes)} stored by them${s.unreadable ? ` · ${s.unreadable} unreadable` : ''} · ${s.hosts.length} host${s.hosts.length === 1 ? '' : 's'}`,
    ),
  );
  document.getElementById('status').replaceChildren(...kids(cards));
}

// ---------------------------------------------------------------- fleet overview

const SVG = 'http://www.w3.org/2000/svg';

/** A size-trend sparkline: the group's snapshot sizes, oldest first, scaled to its own range. */
function sparkline(values) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 100 24');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('class', 'spark');
  if (values.length < 2) return svg;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const y = (v) => (hi === lo ? 12 : 22 - (20 * (v - lo)) / (hi - lo));
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', values.map((v, i) => `${((100 * i) / (values.length - 1)).toFixed(1)},${y(v).toFixed(1)}`).join(' '));
  line.setAttribute('vector-effect', 'non-scaling-stroke');
  svg.append(line);
  const title = document.createElementNS(SVG, 'title');
  title.textContent = `snapshot size ${bytes(values[0])} → ${bytes(values.at(-1))} over the last ${values.length} backups`;
  svg.append(title);
  return svg;
}

const groupKey = (g) => `${g.repositoryIndex}:${g.id}`;
function selectedGroup() {
  return state.fleet?.groups.find((g) => g.repositoryIndex === state.repo && g.id === state.group) ?? null;
}

function fleetRow(g, several) {
  const f = g.freshness;
  const lr = g.lastResult;
  return h(
    'tr',
    {
      dataset: { group: g.id, repo: String(g.repositoryIndex), freshness: f.status },
      class: [f.status === 'stale' ? 'stale' : '', groupKey(g) === `${state.repo}:${state.group}` ? 'selected' : ''].join(' '),
      onclick: () => selectGroup(g).catch(showError),
    },
    several ? h('td', { class: 'repo-cell mono', title: g.repository }, g.repository) : null,
    h('td', { class: 'host' }, g.host),
    h(
      'td',
      { class: 'sources', title: groupName(g) },
      g.sources.join(', '),
      g.tags.length ? h('span', { class: 'muted' }, ` [${g.tags.join(',')}]`) : null,
    ),
    h(
      'td',
      { class: 'fresh', title: freshnessText(f).sub },
      h('span', { class: `badge fresh ${f.status}` }, f.newest ? `${duration(f.ageMs)} ago` : 'never'),
    ),
    h(
      'td',
      { class: 'result', title: lr?.error ?? '' },
      lr ? (lr.ok ? h('span', { class: 'ok-text' }, '✓ ok') : h('span', { class: 'bad-text' }, `✗ ${lr.operation ?? 'failed'}`)) : '—',
    ),
    h('td', { class: 'trend' }, sparkline(g.trend.bytesTotal)),
    h(
      'td',
      { class: 'num anomalies' },
      g.anomalies === null
        ? '—'
        : g.anomalies
          ? h('span', { class: `badge anomaly ${g.lastAnomaly?.severity ?? ''}` }, `⚠ ${g.anomalies}`)
          : '0',
    ),
    h('td', { class: 'hold' }, g.hold ? h('span', { class: 'badge broken', title: g.hold.reasons.join('\n') }, 'retention held') : ''),
  );
}

function renderFleet() {
  const { groups, repositories } = state.fleet;
  const several = repositories.length > 1;
  const head = h(
    'tr',
    {},
    several ? h('th', {}, 'repository') : null,
    h('th', {}, 'host'),
    h('th', {}, 'sources [tags]'),
    h('th', {}, 'newest'),
    h('th', {}, 'last result'),
    h('th', {}, 'size trend'),
    h('th', { class: 'num' }, 'anomalies'),
    h('th', {}, 'hold'),
  );
  const broken = repositories.filter((r) => r.error);
  document.getElementById('fleet-body').replaceChildren(
    ...kids(
      broken.map((r) => h('p', { class: 'error' }, `${r.location}: ${r.error}`)),
      groups.length
        ? h(
            'div',
            { class: 'scroll' },
            h(
              'table',
              { id: 'fleet', class: 'rows' },
              h('thead', {}, head),
              h(
                'tbody',
                {},
                groups.map((g) => fleetRow(g, several)),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'No backups yet.'),
    ),
  );
  document.getElementById('fleet-panel').dataset.stale = String(groups.filter((g) => g.freshness.status === 'stale').length);
}

async function loadGroups() {
  state.fleet = await api('/api/groups');
  document.getElementById('repo').textContent = state.fleet.repositories.map((r) => r.location).join(' · ');
  if (!selectedGroup()) {
    const first = state.fleet.groups[0];
    state.repo = first?.repositoryIndex ?? 0;
    state.group = first?.id ?? null;
  }
  renderFleet();
}

/** Show one group: its cards, its timeline with its own band, its backups, its repository's anomalies and cost. */
async function selectGroup(g) {
  const repoChanged = g.repositoryIndex !== state.repo;
  state.repo = g.repositoryIndex;
  state.group = g.id;
  for (const tr of document.querySelectorAll('#fleet tbody tr')) {
    tr.classList.toggle('selected', tr.dataset.group === g.id && tr.dataset.repo === String(g.repositoryIndex));
  }
  document.getElementById('timeline-group').textContent = groupName(g);
  closeSheet();
  await Promise.all([loadSummary(), loadTimeline()]);
  await loadPage(0);
  document.body.dataset.group = `${g.repositoryIndex}:${g.id}`;
  if (repoChanged || !state.costOf) loadSide();
}

// ---------------------------------------------------------------- timeline chart

/**
 * mean ± 2σ of up to BAND_WINDOW earlier backups of the same sources and kind (full backups
 * read everything, incrementals only changes: they are compared apart); null until BAND_MIN.
 */
function band(values, keys) {
  const lo = new Array(values.length).fill(null);
  const hi = new Array(values.length).fill(null);
  const seen = new Map();
  for (let i = 0; i < values.length; i++) {
    const prev = seen.get(keys[i]) ?? [];
    if (prev.length >= BAND_MIN) {
      const mean = prev.reduce((a, b) => a + b, 0) / prev.length;
      const sd = Math.sqrt(prev.reduce((a, b) => a + (b - mean) ** 2, 0) / (prev.length - 1));
      lo[i] = Math.max(0, mean - 2 * sd);
      hi[i] = mean + 2 * sd;
    }
    prev.push(values[i]);
    if (prev.length > BAND_WINDOW) prev.shift();
    seen.set(keys[i], prev);
  }
  return { lo, hi };
}

function drawChart() {
  const tl = state.timeline;
  const el = document.getElementById('chart');
  if (!tl) return;
  state.chart?.destroy();
  state.chart = null;
  el.replaceChildren();
  el.dataset.points = String(tl.ids.length);
  el.dataset.anomalies = Object.keys(tl.anomalies).join(' ');
  el.dataset.group = state.group ?? '';
  if (tl.ids.length === 0) {
    el.append(h('p', { class: 'muted' }, 'No backups yet.'));
    return;
  }
  const m = state.metric;
  const vals = tl[m];
  const { lo, hi } = band(
    vals,
    tl.sourceKeys.map((k, i) => `${k}\u0000${tl.kinds[i]}`),
  );
  el.dataset.band = String(lo.filter((v) => v !== null).length);
  const anom = tl.ids.map((id, i) => (tl.anomalies[id] ? vals[i] : null));
  const isBytes = m !== 'durationMs';
  const fmt = (v) => (v === null || v === undefined ? '—' : isBytes ? bytes(v) : duration(v));
  const accent = css('--accent');
  const muted = css('--muted');
  const grid = css('--line');
  const axis = { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
  const opts = {
    width: Math.max(280, el.clientWidth),
    height: el.clientWidth < 600 ? 240 : 300,
    cursor: { points: { size: 8 }, drag: { x: true, y: false } },
    legend: { show: true, live: true },
    scales: { x: { time: true } },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    axes: [axis, { ...axis, size: 70, values: (_u, ticks) => ticks.map(fmt) }],
    series: [
      { label: 'UTC', value: (_u, t) => (t ? new Date(t * 1000).toISOString().slice(0, 16).replace('T', ' ') : '—') },
      {
        label: m === 'bytesIn' ? 'read' : m === 'bytesStored' ? 'stored' : 'duration',
        stroke: accent,
        width: 1.5,
        points: { show: tl.ids.length <= 300, size: 4 },
        value: (_u, v) => fmt(v),
      },
      // The band's edges join across the points of the other kind (a full among incrementals), so
      // the band is one area, not pieces.
      { label: 'mean−2σ', stroke: 'transparent', spanGaps: true, points: { show: false }, value: (_u, v) => fmt(v) },
      { label: 'mean+2σ', stroke: 'transparent', spanGaps: true, points: { show: false }, value: (_u, v) => fmt(v) },
      {
        label: 'anomaly',
        stroke: css('--bad'),
        width: 0,
        paths: () => null,
        points: { show: true, size: 11, width: 2, stroke: css('--bad'), fill: css('--bad') },
        value: (_u, v) => (v === null ? '' : '⚠'),
      },
    ],
    bands: [{ series: [3, 2], fill: css('--band') }],
  };
  state.chart = new uPlot(opts, [tl.t, vals, lo, hi, anom], el);
  // A click (not a drag to zoom) opens the backup under the cursor. uPlot handles the mouse
  // itself, so listen for mouseup rather than click.
  state.chart.over.addEventListener('mouseup', () => {
    const u = state.chart;
    if (!u || u.select.width > 2) return;
    const i = u.cursor.idx;
    if (i !== null && i !== undefined && tl.ids[i]) void selectBackup(tl.ids[i]);
  });
}

async function loadTimeline() {
  state.timeline = await api(`/api/timeline?${repoQuery(true)}`);
  const note = document.getElementById('monitor-note');
  const mon = state.timeline.monitor;
  note.hidden = true;
  if (mon.status !== 'ok' || mon.runs === 0) {
    note.hidden = false;
    note.textContent = `Anomalies are not marked: ${mon.status === 'error' ? mon.error : mon.status === 'ok' ? 'no run history in this repository yet' : mon.reason}.`;
  }
  drawChart();
}

// ---------------------------------------------------------------- backups list

async function loadPage(offset) {
  const p = await api(`/api/backups?${repoQuery(!state.allGroups)}&offset=${offset}&limit=${PAGE}`);
  state.offset = p.offset;
  state.total = p.total;
  const anomalies = state.timeline?.anomalies ?? {};
  const rows = p.items.map((b) => {
    if (b.error) {
      return h(
        'tr',
        { dataset: { id: b.id } },
        h('td', {}, '—'),
        h('td', { class: 'mono' }, shortId(b.id)),
        h('td', { colspan: 9 }, h('span', { class: 'badge broken' }, 'unreadable'), ' ', b.error),
      );
    }
    const a = anomalies[b.id];
    return h(
      'tr',
      {
        dataset: { id: b.id },
        class: [a ? 'anomalous' : '', state.selected === b.id ? 'selected' : ''].join(' '),
        onclick: () => selectBackup(b.id),
        title: a ? a.messages.join('\n') : undefined,
      },
      h('td', { title: utc(b.time) }, utc(b.time).slice(0, 16)),
      h('td', { class: 'mono' }, shortId(b.id)),
      h('td', { class: 'host', title: b.host }, b.host),
      h('td', { class: 'sources', title: b.sources.join(', ') }, b.sources.map((x) => pathTail(x, 26)).join(', ')),
      h('td', {}, h('span', { class: 'badge kind' }, b.kind === 'full' ? 'full' : `incr ${b.chain ?? ''}`)),
      h('td', { class: 'num' }, b.files.toLocaleString('en')),
      h('td', { class: 'num' }, bytes(b.bytesIn)),
      h('td', { class: 'num' }, bytes(b.bytesStored)),
      h('td', { class: 'num' }, duration(b.durationMs)),
      h('td', { class: 'num' }, b.warnings ? String(b.warnings) : ''),
      h('td', {}, a ? h('span', { class: `badge anomaly ${a.severity}` }, `⚠ ${a.metrics.length}`) : null),
    );
  });
  document.querySelector('#backups tbody').replaceChildren(...rows);
  const end = Math.min(p.total, p.offset + p.items.length);
  document
    .getElementById('pager')
    .replaceChildren(
      h(
        'button',
        { type: 'button', id: 'newer', disabled: p.offset === 0, onclick: () => loadPage(Math.max(0, p.offset - PAGE)).catch(showError) },
        '‹ newer',
      ),
      ` ${p.total ? p.offset + 1 : 0}–${end} of ${p.total} `,
      h(
        'button',
        { type: 'button', id: 'older', disabled: end >= p.total, onclick: () => loadPage(p.offset + PAGE).catch(showError) },
        'older ›',
      ),
    );
}

// ---------------------------------------------------------------- one backup

function stat(label, value) {
  return h('div', {}, h('dt', {}, label), h('dd', {}, value));
}

function copyButton(text) {
  return h(
    'button',
    {
      type: 'button',
      onclick: async (ev) => {
        const b = ev.currentTarget;
        try {
          await navigator.clipboard.writeText(text);
          b.textContent = 'copied';
        } catch {
          // No clipboard (not a secure context): select the text for Ctrl-C instead.
          const code = b.previousSibling;
          getSelection().selectAllChildren(code);
          b.textContent = 'selected';
        }
        setTimeout(() => (b.textContent = 'copy'), 1500);
      },
    },
    'copy',
  );
}

// On a narrow screen the details are a sheet over the lower part of the screen, where the
// finger is, instead of a panel far below the list (style.css, .sheet).
const narrow = () => matchMedia('(max-width: 900px)').matches;
function openSheet() {
  document.body.classList.toggle('sheet-open', narrow());
}
function closeSheet() {
  document.body.classList.remove('sheet-open');
}
function sheetClose() {
  return h('button', { type: 'button', class: 'sheet-close', 'aria-label': 'close the details', onclick: closeSheet }, '✕');
}

async function selectBackup(id) {
  state.selected = id;
  for (const tr of document.querySelectorAll('#backups tbody tr')) tr.classList.toggle('selected', tr.dataset.id === id);
  const panel = document.getElementById('detail');
  openSheet();
  panel.replaceChildren(sheetClose(), h('h2', {}, 'Backup ', h('span', { class: 'mono' }, id)), h('p', { class: 'muted' }, 'loading…'));
  let d;
  try {
    d = await api(`/api/backups/${encodeURIComponent(id)}?${repoQuery()}`);
  } catch (e) {
    panel.replaceChildren(sheetClose(), h('h2', {}, 'Backup ', h('span', { class: 'mono' }, id)), h('p', { class: 'error' }, e.message));
    return;
  }
  if (state.selected !== id) return;
  panel.dataset.id = id;
  const s = d.stats;
  const parts = [
    sheetClose(),
    h('h2', {}, 'Backup ', h('span', { class: 'mono' }, d.id)),
    h(
      'p',
      { class: 'small muted' },
      `${d.kind}${d.parent ? ` of ${d.parent}` : ''} · ${d.host} · ${d.sources.join(', ')}${d.tags.length ? ` · tags ${d.tags.join(', ')}` : ''} · s3backup ${d.toolVersion}`,
    ),
    h(
      'dl',
      { class: 'stats' },
      stat('started (UTC)', utc(d.time)),
      stat('duration', duration(d.durationMs)),
      stat('files', d.files.toLocaleString('en')),
      stat('new / changed / deleted', `${d.newFiles} / ${d.changedFiles} / ${d.deletedFiles}`),
      stat('read', bytes(d.bytesIn)),
      stat('snapshot size', bytes(d.bytesTotal)),
      stat('stored', bytes(d.bytesStored)),
      stat('compression', `${(s.compressionRatio ?? 1).toFixed(2)}× ${d.options.codec}`),
      stat('warnings', String(d.warnings)),
    ),
  ];
  const an = d.anomalies;
  parts.push(h('h3', {}, 'Anomalies'));
  if (an.status !== 'ok') parts.push(notConfigured(an));
  else if (an.data.length === 0) parts.push(h('p', { class: 'muted' }, 'None: this backup looks like its history.'));
  else {
    parts.push(
      h(
        'div',
        { id: 'detail-anomalies' },
        an.data.map((f) =>
          h(
            'div',
            { class: `finding ${f.severity}` },
            h('strong', {}, `${f.metric}: `),
            f.message,
            h('div', { class: 'small muted' }, f.recommendation),
          ),
        ),
      ),
    );
  }
  if (d.warningList.length) {
    parts.push(
      h('h3', {}, `Warnings (${d.warnings})`),
      h(
        'ul',
        { class: 'plain small', id: 'detail-warnings' },
        d.warningList.map((w) => h('li', {}, w)),
      ),
    );
  }
  parts.push(
    h('h3', {}, `Archives it needs (${d.archives.length})`),
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { id: 'chain' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', {}, 'archive of backup'),
            h('th', {}, 'format'),
            h('th', { class: 'num' }, 'size'),
            h('th', {}, 'storage class'),
          ),
        ),
        h(
          'tbody',
          {},
          d.archives.map((a) =>
            h(
              'tr',
              {},
              h(
                'td',
                { class: 'mono', title: a.key },
                `${shortId(a.id)}${a.parts > 1 ? ` part ${a.part}/${a.parts}` : ''}${a.id === d.id ? ' (this one)' : ''}`,
              ),
              h('td', { class: 'small' }, a.codec),
              h('td', { class: 'num' }, bytes(a.size)),
              h(
                'td',
                {},
                a.present ? `${a.storageClass}${a.restore ? ` (thaw ${a.restore})` : ''}` : h('span', { class: 'badge broken' }, 'missing'),
              ),
            ),
          ),
        ),
      ),
    ),
  );
  if (d.parents.length) {
    parts.push(h('p', { class: 'small muted' }, 'Incremental chain: ', [d.id, ...d.parents.map((p) => p.id)].map(shortId).join(' → ')));
  }
  parts.push(h('h3', {}, 'Files'), h('div', { id: 'tree' }));
  panel.replaceChildren(...kids(parts));
  await showTree(d.id, '');
}

/**
 * The first n components of a path given as base64 of its bytes, as base64: paths that are not
 * UTF-8 (the tree shows them with \xHH, and gives their bytes as pathBase64) are cut as bytes.
 */
function base64Prefix(b64, n) {
  const bytes = atob(b64);
  let at = -1;
  for (let i = 0; i < n; i++) at = bytes.indexOf('/', at + 1);
  return btoa(at < 0 ? bytes : bytes.slice(0, at));
}

/** The file tree of a backup at dir (a path; or, with dirBase64, the exact bytes of one that is not UTF-8). */
async function showTree(id, dir, dirBase64) {
  const el = document.getElementById('tree');
  if (!el) return;
  let t;
  try {
    const where = dirBase64 ? `pathBase64=${encodeURIComponent(dirBase64)}` : `path=${encodeURIComponent(dir)}`;
    t = await api(`/api/backups/${encodeURIComponent(id)}/tree?${repoQuery()}&${where}`);
  } catch (e) {
    el.replaceChildren(h('p', { class: 'error' }, e.message));
    return;
  }
  const segs = t.path ? t.path.split('/') : [];
  const crumbs = h(
    'div',
    { class: 'crumbs small' },
    h('button', { type: 'button', onclick: () => showTree(id, '') }, '/'),
    segs.map((s, i) =>
      h(
        'button',
        { type: 'button', onclick: () => showTree(id, segs.slice(0, i + 1).join('/'), t.pathBase64 && base64Prefix(t.pathBase64, i + 1)) },
        s,
      ),
    ),
  );
  const cmdBox = h('div', { id: 'restore-cmd' });
  const showCmd = (label, cmd) =>
    cmdBox.replaceChildren(h('div', { class: 'small muted' }, label), h('div', { class: 'cmd' }, h('code', {}, cmd), copyButton(cmd)));
  if (t.restore) showCmd(`Restore ${t.path}/ (everything below it):`, t.restore);
  const rows = t.entries.map((e) =>
    h(
      'tr',
      { dataset: { path: e.path } },
      h(
        'td',
        { class: 'name' },
        e.type === 'dir'
          ? h('span', { class: 'dirlink', onclick: () => showTree(id, e.path, e.pathBase64) }, `▸ ${e.name}/`)
          : `${e.name}${e.target && e.type === 'symlink' ? ` → ${e.target}` : ''}`,
        e.error ? h('span', { class: 'badge broken', title: e.error }, ' not backed up') : null,
      ),
      h('td', { class: 'num' }, e.type === 'dir' ? `${e.below} inside` : bytes(e.size)),
      h('td', { class: 'small muted' }, utc(e.mtime)),
      h('td', {}, h('button', { type: 'button', class: 'restore', onclick: () => showCmd(`Restore ${e.path}:`, e.restore) }, 'restore…')),
    ),
  );
  el.replaceChildren(
    ...kids(
      crumbs,
      h('div', { class: 'scroll' }, h('table', { class: 'tree' }, h('tbody', {}, rows))),
      t.total > t.entries.length ? h('p', { class: 'small muted' }, `first ${t.entries.length} of ${t.total} entries shown`) : null,
      cmdBox,
    ),
  );
}

// ---------------------------------------------------------------- anomalies and cost

async function loadAnomalies() {
  const el = document.getElementById('anomalies');
  const a = await api(`/api/anomalies?${repoQuery()}`);
  if (a.status !== 'ok') {
    el.replaceChildren(h('h2', {}, 'Anomalies and failures'), notConfigured(a));
    return;
  }
  const d = a.data;
  if (d.runs === 0) {
    el.replaceChildren(
      h('h2', {}, 'Anomalies and failures'),
      h('div', { class: 'notconf' }, 'No run history in this repository yet: each backup records one when anomaly detection is on.'),
    );
    return;
  }
  el.replaceChildren(
    ...kids(
      h('h2', {}, 'Anomalies and failures'),
      h(
        'p',
        { class: 'small muted' },
        `${d.runs} runs in the history · ${d.recent.length} with anomalies · ${d.failures.length} recent failures`,
      ),
      // Open anomaly holds first: their retention is suspended until someone acknowledges them.
      (d.holds ?? []).map((hd) =>
        h(
          'div',
          { class: 'finding high hold' },
          h('strong', {}, `Retention held for ${hd.host} (${hd.sources.join(', ')})`),
          ` since backup ${shortId(hd.backupId)} (${utc(hd.time)}): no backup of it is forgotten until `,
          h('code', {}, `s3backup anomalies ack ${hd.backupId}`),
          h(
            'ul',
            { class: 'plain small' },
            hd.reasons.map((r) => h('li', {}, r)),
          ),
        ),
      ),
      d.failures.length ? h('h3', {}, 'Failures') : null,
      d.failures.map((f) =>
        h(
          'div',
          { class: 'finding high' },
          h('strong', {}, `${utc(f.time)} ${groupName(f)}: `),
          f.error ?? 'failed',
          f.operation ? h('span', { class: 'small muted' }, ` (${f.operation})`) : null,
        ),
      ),
      d.recent.length ? h('h3', {}, 'Anomalous backups') : h('p', { class: 'muted' }, 'No anomalies in the history.'),
      d.recent.map((r) =>
        h(
          'div',
          { class: `finding ${r.findings.some((f) => f.severity === 'high') ? 'high' : ''}` },
          h(
            'a',
            {
              href: '#',
              onclick: (ev) => {
                ev.preventDefault();
                void selectBackup(r.id);
              },
            },
            `${utc(r.time)} ${shortId(r.id)}`,
          ),
          h('span', { class: 'small group-name' }, ` · ${groupName(r)}`),
          h(
            'ul',
            { class: 'plain small' },
            r.findings.map((f) => h('li', {}, f.message)),
          ),
        ),
      ),
    ),
  );
}

const usd = (n) => money(n, 'USD');

function forecastLine(label, f, fmt) {
  if (!f) return null;
  if (f.unavailable) return h('li', {}, `${label}: no forecast yet (${f.unavailable})`);
  const last = f.ahead.at(-1);
  return h(
    'li',
    {},
    `${label} in ${f.ahead.length} months: `,
    h('strong', {}, fmt(last.value)),
    ` (95 % interval ${fmt(last.low)} – ${fmt(last.high)})`,
  );
}

/** The cost report of the cost module (CostReport), as tables and a forecast chart. */
function renderCost(c) {
  const parts = [];
  const classes = c.current.classes;
  const max = Math.max(...classes.map((k) => k.monthlyCost), 1e-9);
  parts.push(
    h(
      'p',
      {},
      h('strong', { id: 'cost-total' }, `${usd(c.current.monthlyCost)} per month`),
      ` for ${bytes(c.totalBytes)} in ${c.totalObjects.toLocaleString('en')} objects`,
      h(
        'span',
        { class: 'small muted' },
        ` · ${c.prices.region}${c.prices.regionFallback ? ` (priced as ${c.prices.regionFallback})` : ''} prices of ${c.prices.date ?? c.prices.version}${c.store === 'local' ? ' · local store: priced as if it were in S3' : ''}`,
      ),
    ),
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { id: 'cost-classes' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', {}, 'storage class'),
            h('th', { class: 'num' }, 'objects'),
            h('th', { class: 'num' }, 'stored'),
            h('th', { class: 'num' }, 'per month'),
            h('th', {}, ''),
          ),
        ),
        h(
          'tbody',
          {},
          classes.map((k) =>
            h(
              'tr',
              {},
              h('td', {}, k.storageClass),
              h('td', { class: 'num' }, k.objects.toLocaleString('en')),
              h('td', { class: 'num' }, bytes(k.bytes)),
              h('td', { class: 'num' }, usd(k.monthlyCost)),
              h(
                'td',
                { style: 'width:30%' },
                h('div', { class: 'bar', style: `width:${Math.max(1, Math.round((100 * k.monthlyCost) / max))}%` }),
              ),
            ),
          ),
        ),
      ),
    ),
  );
  const sim = c.simulation;
  const sc = sim.scenarios;
  const sv = c.savings;
  parts.push(
    h('h3', {}, `Lifecycle rules over ${sim.months} months`),
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { id: 'cost-lifecycle' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', {}, 'scenario'),
            h('th', { class: 'num' }, 'per month (average)'),
            h('th', { class: 'num' }, 'saves per month'),
          ),
        ),
        h(
          'tbody',
          {},
          h(
            'tr',
            {},
            h('td', {}, 'no lifecycle rules'),
            h('td', { class: 'num' }, usd(sc.none.monthlyAverage)),
            h('td', { class: 'num' }, '—'),
          ),
          h(
            'tr',
            {},
            h('td', {}, c.lifecycle.available ? `the bucket's rules (${c.lifecycle.rules.length})` : 'current (no rules)'),
            h('td', { class: 'num' }, usd(sc.current.monthlyAverage)),
            h('td', { class: 'num' }, `${usd(sv.currentVsNone.monthly)} (${sv.currentVsNone.percent.toFixed(1)} %)`),
          ),
          h(
            'tr',
            {},
            h('td', {}, 'recommended rules'),
            h('td', { class: 'num' }, usd(sc.recommended.monthlyAverage)),
            h('td', { class: 'num' }, `${usd(sv.recommendedVsNone.monthly)} (${sv.recommendedVsNone.percent.toFixed(1)} %)`),
          ),
        ),
      ),
    ),
    h('p', { class: 'small muted' }, sim.recommendation),
  );
  const fc = c.forecast;
  parts.push(h('h3', {}, 'Forecast'));
  if (fc) {
    parts.push(
      h(
        'ul',
        { class: 'plain', id: 'cost-forecast' },
        forecastLine('Monthly cost', fc.monthlyCost, usd),
        forecastLine('Stored', fc.bytes, bytes),
      ),
    );
    if (!fc.monthlyCost.unavailable) parts.push(forecastChart(fc.monthlyCost));
    else
      parts.push(
        h(
          'p',
          { class: 'small muted' },
          c.historySource
            ? `History: ${c.historySource}.`
            : 'A forecast needs earlier cost reports: set cost.saveCsv (and schedule.cost, or run "s3backup cost --save-csv FILE" now and then).',
        ),
      );
  }
  if (c.warnings.length)
    parts.push(
      h('h3', {}, 'Warnings'),
      h(
        'ul',
        { class: 'plain small' },
        c.warnings.map((w) => h('li', {}, w.message)),
      ),
    );
  return parts;
}

/** The monthly cost ahead with its 95 % interval. */
function forecastChart(f) {
  const el = h('div', { class: 'chart-small', id: 'forecast-chart' });
  requestAnimationFrame(() => {
    const t = f.ahead.map((p) => Date.parse(p.time) / 1000);
    const mk = (key) => f.ahead.map((p) => p[key]);
    const muted = css('--muted');
    const grid = css('--line');
    const axis = { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
    new uPlot(
      {
        width: Math.max(260, el.clientWidth),
        height: 160,
        legend: { show: false },
        cursor: { show: false },
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
        axes: [axis, { ...axis, size: 60, values: (_u, ticks) => ticks.map(usd) }],
        series: [{}, { stroke: css('--accent2'), width: 2 }, { stroke: 'transparent' }, { stroke: 'transparent' }],
        bands: [{ series: [3, 2], fill: css('--band') }],
      },
      [t, mk('value'), mk('low'), mk('high')],
      el,
    );
  });
  return el;
}

async function loadCost() {
  const el = document.getElementById('cost');
  const c = await api(`/api/cost?${repoQuery()}`);
  el.replaceChildren(...kids(h('h2', {}, 'Storage and cost'), c.status === 'ok' ? renderCost(c.data) : notConfigured(c)));
}

// ---------------------------------------------------------------- start

initTheme();
document.getElementById('metric').addEventListener('change', (e) => {
  state.metric = e.target.value;
  drawChart();
});
let resizeTimer;
new ResizeObserver(() => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(
    () => state.chart?.setSize({ width: Math.max(280, document.getElementById('chart').clientWidth), height: state.chart.height }),
    100,
  );
}).observe(document.getElementById('chart'));

document.getElementById('scope').addEventListener('change', (e) => {
  state.allGroups = e.target.value === 'all';
  loadPage(0).catch(showError);
});

/** The panels about the selected group's repository as a whole: anomalies and cost. */
function loadSide() {
  state.costOf = state.repo;
  loadAnomalies().catch((e) =>
    document.getElementById('anomalies').replaceChildren(h('h2', {}, 'Anomalies and failures'), h('p', { class: 'error' }, e.message)),
  );
  loadCost().catch((e) =>
    document.getElementById('cost').replaceChildren(h('h2', {}, 'Storage and cost'), h('p', { class: 'error' }, e.message)),
  );
}

void (async () => {
  try {
    await loadGroups();
    const g = selectedGroup();
    if (g) await selectGroup(g);
    else {
      await Promise.all([loadSummary(), loadTimeline()]);
      await loadPage(0);
      loadSide();
    }
    document.body.dataset.ready = 'true';
  } catch (e) {
    showError(e);
    loadSide();
  }
})();
