// Saga's web console: the catalogue, a service's instances, the health
// report and the latest changes, kept current from the event stream.
// Routes live in the URL's fragment (#/, #/services/web, #/health), so the
// server serves one page.

import { ApiError, getJSON, token } from './api.js';
import { EventStream } from './stream.js';

const FEED_LENGTH = 50;
const HEALTH_REFRESH_MS = 5000;

const main = document.getElementById('main');
const live = document.getElementById('live');
const feed = document.getElementById('feed');
const feedEmpty = document.getElementById('feed-empty');
const signout = document.getElementById('signout');

// The page's state: what is shown, and what was last read for it.
const state = {
  route: null,      // {view: 'services'|'service'|'health'|'login'|'denied', name?}
  index: null,      // the index of what is shown, to skip redraws that change nothing
  query: '',        // the catalogue's search
  skew: 0,          // server clock minus ours, for the expiry countdown
  pending: null,    // a scheduled refresh
  streamOpened: false,
};

const stream = new EventStream({
  onOpen() {
    live.textContent = 'Live';
    live.className = 'live live-on';
    if (state.streamOpened) addNote('Reconnected; the page was read again to catch up.');
    state.streamOpened = true;
    state.index = null; // anything may have changed while the stream was away
    refresh();
  },
  onLost(delay) {
    live.textContent = `Reconnecting in ${Math.ceil(delay / 1000)} s…`;
    live.className = 'live live-off';
  },
  onEvent(ev) {
    addEvent(ev);
    if (state.route.view === 'services' || state.route.view === 'health' ||
        (state.route.view === 'service' && ev.service === state.route.name)) {
      scheduleRefresh();
    }
  },
  onDenied: showDenied,
});

// el builds an element: el('a', {href: '#/'}, 'text', child…).
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function parseRoute() {
  const hash = decodeURIComponent(location.hash.replace(/^#/, ''));
  if (hash.startsWith('/services/')) return { view: 'service', name: hash.slice('/services/'.length) };
  if (hash === '/health') return { view: 'health' };
  return { view: 'services' };
}

function navigate() {
  // "#main" is the skip link's target, not a route.
  const shown = ['services', 'service', 'health'].includes(state.route?.view);
  if (shown && location.hash && !location.hash.startsWith('#/')) return;
  state.route = parseRoute();
  state.index = null;
  for (const link of document.querySelectorAll('[data-nav]')) {
    const current = link.dataset.nav === (state.route.view === 'health' ? 'health' : 'services');
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const views = { services: drawServicesFrame, service: drawServiceFrame, health: drawHealthFrame };
  views[state.route.view]();
  refresh();
}

// scheduleRefresh gathers a burst of events into one read.
function scheduleRefresh() {
  if (state.pending) return;
  state.pending = setTimeout(() => {
    state.pending = null;
    refresh();
  }, 150);
}

async function refresh() {
  const route = state.route;
  const loaders = { services: loadServices, service: loadService, health: loadHealth };
  if (!loaders[route.view]) return;
  try {
    await loaders[route.view](route);
  } catch (err) {
    if (route !== state.route) return; // the user moved on
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) showDenied(err);
    else showProblem(err);
  }
}

function noteTime(serverTime) {
  if (Number.isFinite(serverTime)) {
    const skew = serverTime - Date.now();
    // The Date header has whole seconds: only a larger gap is a real skew.
    state.skew = Math.abs(skew) > 2000 ? skew : 0;
  }
}

function setTitle(text) {
  document.title = `${text} · Saga console`;
}

// --- the catalogue ---

function drawServicesFrame() {
  setTitle('Services');
  const search = el('input', { id: 'search', type: 'search', autocomplete: 'off', spellcheck: 'false', value: state.query });
  search.addEventListener('input', () => {
    state.query = search.value;
    filterServices();
  });
  main.replaceChildren(
    el('h1', { text: 'Services' }),
    el('p', { id: 'summary', class: 'muted' }, 'Loading…'),
    el('div', { class: 'search' }, el('label', { for: 'search', text: 'Search services' }), search),
    el('table', { id: 'services', class: 'catalogue' },
      el('caption', { class: 'visually-hidden', text: 'Registered services' }),
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col', text: 'Service' }),
        el('th', { scope: 'col', class: 'num', text: 'Instances' }),
        el('th', { scope: 'col', class: 'num', text: 'Passing' }))),
      el('tbody')),
    el('p', { id: 'no-match', class: 'muted', hidden: true }),
  );
}

async function loadServices(route) {
  const { body, stale, serverTime } = await getJSON('/api/v1/services');
  if (route !== state.route) return;
  noteTime(serverTime);
  if (state.index === body.index) return;
  state.index = body.index;
  const services = body.services || [];
  // One string for the HTML parser: many times faster than building a
  // thousand rows node by node. Every value is escaped.
  main.querySelector('#services tbody').innerHTML = services.map((s) =>
    `<tr data-name="${escapeHTML(s.name)}"><th scope="row"><a href="#/services/${escapeHTML(encodeURIComponent(s.name))}">` +
    `${escapeHTML(s.name)}</a></th><td class="num">${Number(s.instances)}</td>` +
    `<td class="${s.passing < s.instances ? 'num short' : 'num'}">${Number(s.passing)}</td></tr>`).join('');
  const instances = services.reduce((n, s) => n + s.instances, 0);
  const passing = services.reduce((n, s) => n + s.passing, 0);
  main.querySelector('#summary').textContent =
    `${plural(services.length, 'service')}, ${plural(instances, 'instance')}, ${passing} passing` +
    (stale ? ' (possibly stale: Saga cannot reach its store)' : '');
  filterServices();
  // The console's own figure for docs/performance.md: the catalogue is in the page.
  if (!performance.getEntriesByName('saga-catalogue').length) performance.mark('saga-catalogue');
}

function filterServices() {
  const query = state.query.trim().toLowerCase();
  const rows = main.querySelectorAll('#services tbody tr');
  let shown = rows.length;
  if (query !== '' || main.querySelector('#services tbody tr[hidden]')) shown = applyFilter(rows, query);
  const none = main.querySelector('#no-match');
  if (!none) return;
  none.hidden = shown > 0;
  none.textContent = rows.length === 0 ? 'No services are registered.' : `No service matches “${state.query.trim()}”.`;
}

// applyFilter hides the rows whose name does not contain query, and
// returns how many are shown.
function applyFilter(rows, query) {
  let shown = 0;
  for (const row of rows) {
    const match = row.dataset.name.toLowerCase().includes(query);
    row.hidden = !match;
    if (match) shown++;
  }
  return shown;
}

// --- one service ---

function drawServiceFrame() {
  const name = state.route.name;
  setTitle(name);
  main.replaceChildren(
    el('p', { class: 'crumb' }, el('a', { href: '#/', text: '← All services' })),
    el('h1', {}, 'Service ', el('code', { text: name })),
    el('p', { id: 'summary', class: 'muted' }, 'Loading…'),
    el('div', { id: 'instances' }),
  );
}

async function loadService(route) {
  const { body, stale, serverTime } = await getJSON(`/api/v1/services/${encodeURIComponent(route.name)}?status=any`);
  if (route !== state.route) return;
  noteTime(serverTime);
  const instances = body.instances || [];
  const count = (status) => instances.filter((i) => i.status === status).length;
  const parts = ['passing', 'warning', 'critical'].filter((s) => count(s)).map((s) => `${count(s)} ${s}`);
  main.querySelector('#summary').textContent =
    `${plural(instances.length, 'instance')}${parts.length ? ': ' + parts.join(', ') : ''}` +
    (stale ? ' (possibly stale: Saga cannot reach its store)' : '');
  const holder = main.querySelector('#instances');
  if (!instances.length) {
    holder.replaceChildren(el('p', { text: 'No live instances. An instance appears here once it registers.' }));
    return;
  }
  const withChecks = instances.some((i) => Array.isArray(i.checks) && i.checks.length);
  const columns = ['ID', 'Address', 'Port', 'Status', 'Tags', 'Metadata', ...(withChecks ? ['Checks'] : []), 'Expires in'];
  const cell = (label, ...content) => el('td', { 'data-label': label }, el('div', {}, ...content));
  const rows = instances.map((i) => el('tr', { 'data-id': i.id },
    cell('ID', el('code', { text: i.id })),
    cell('Address', i.address),
    cell('Port', String(i.port)),
    cell('Status', statusBadge(i.status)),
    cell('Tags', ...tagList(i.tags)),
    cell('Metadata', metadataList(i.metadata)),
    withChecks ? cell('Checks', checkList(i.checks)) : null,
    el('td', { 'data-label': 'Expires in', 'data-expires': String(Date.parse(i.expires_at)), class: 'expires' })));
  holder.replaceChildren(el('table', { class: 'instances' },
    el('caption', { class: 'visually-hidden', text: `Instances of ${route.name}` }),
    el('thead', {}, el('tr', {}, ...columns.map((c) => el('th', { scope: 'col', text: c })))),
    el('tbody', {}, ...rows)));
  tick();
}

function statusBadge(status) {
  return el('span', { class: `status status-${status}`, text: status });
}

function tagList(tags) {
  if (!tags || !tags.length) return [el('span', { class: 'muted', text: '—' })];
  return tags.map((t) => el('span', { class: 'tag', text: t }));
}

function metadataList(metadata) {
  const entries = Object.entries(metadata || {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return el('span', { class: 'muted', text: '—' });
  return el('dl', { class: 'meta' }, ...entries.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
}

// checkList shows an instance's active checks (SPEC §7): the target, and
// the status and last output on the Saga that runs the check.
function checkList(checks) {
  if (!checks || !checks.length) return el('span', { class: 'muted', text: '—' });
  return el('ul', { class: 'checks' }, ...checks.map((c) => el('li', {},
    c.status ? statusBadge(c.status) : null, ' ',
    el('code', { text: c.http || c.tcp || 'check' }),
    c.output ? el('span', { class: 'muted', text: ` ${c.output}` }) : null)));
}

// tick counts down every instance's time left.
function tick() {
  const now = Date.now() + state.skew;
  for (const cell of main.querySelectorAll('[data-expires]')) {
    const left = Math.round((Number(cell.dataset.expires) - now) / 1000);
    cell.textContent = left > 0 ? duration(left) : 'expiring';
  }
}

// --- health ---

function drawHealthFrame() {
  setTitle('Health');
  main.replaceChildren(el('h1', { text: 'Health' }), el('div', { id: 'health' }, el('p', { text: 'Loading…' })));
}

async function loadHealth(route) {
  const { body: h } = await getJSON('/api/v1/health');
  if (route !== state.route) return;
  const cache = h.cache || {};
  const pairs = (list) => el('dl', { class: 'facts' },
    ...list.filter(([, v]) => v !== undefined && v !== null).flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, v)]));
  main.querySelector('#health').replaceChildren(
    pairs([
      ['Status', statusBadge(h.status === 'healthy' ? 'passing' : 'critical')],
      ['Report', h.status],
      ['Service', h.service],
      ['Version', h.version],
      ['Storage', h.storage],
      ['Redis', h.redis],
      ['Uptime', h.uptime_seconds === undefined ? undefined : duration(h.uptime_seconds)],
    ]),
    el('h2', { text: 'Cache' }),
    pairs([
      ['Services', String(cache.size ?? 0)],
      ['Instances', cache.instances === undefined ? undefined : String(cache.instances)],
      ['Hits', String(cache.hits ?? 0)],
      ['Misses', String(cache.misses ?? 0)],
      ['Hit ratio', `${((cache.hit_ratio ?? 0) * 100).toFixed(1)} %`],
      ['Last refresh', cache.last_refresh ? new Date(cache.last_refresh).toLocaleString() : 'never'],
    ]),
  );
}

// --- the feed ---

function addEvent(ev) {
  // The event carries the whole instance; older streams sent its id.
  const id = typeof ev.instance === 'object' && ev.instance ? ev.instance.id : ev.instance;
  const link = el('a', { href: `#/services/${encodeURIComponent(ev.service)}`, text: ev.service });
  addFeedItem(el('span', { class: `ev ev-${ev.type}`, text: ev.type }), ' ', link, ' ',
    el('code', { text: id }), ' ', el('span', { class: 'muted', text: `#${ev.index}` }));
}

function addNote(text) {
  addFeedItem(el('span', { class: 'muted', text }));
}

function addFeedItem(...content) {
  const now = new Date();
  feed.prepend(el('li', {}, el('time', { datetime: now.toISOString(), text: now.toLocaleTimeString() }), ' ', ...content));
  while (feed.children.length > FEED_LENGTH) feed.lastElementChild.remove();
  feedEmpty.hidden = true;
}

// --- sign-in and refusals ---

function showLogin(message) {
  stream.stop();
  state.route = { view: 'login' };
  setTitle('Sign in');
  live.textContent = 'Signed out';
  live.className = 'live live-off';
  signout.hidden = true;
  const input = el('input', { id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true });
  const error = el('p', { id: 'login-error', class: 'error', role: 'alert' }, message || '');
  const form = el('form', { class: 'login' },
    el('label', { for: 'token', text: 'Access token' }), input,
    el('button', { type: 'submit', text: 'Sign in' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    token.set(input.value);
    try {
      await getJSON('/api/v1/tokens/self');
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        token.clear();
        error.textContent = `That token was not accepted: ${err.message}`;
        input.focus();
        return;
      }
    }
    start();
  });
  main.replaceChildren(
    el('h1', { text: 'Sign in' }),
    el('p', { text: 'This Saga requires a token (auth.enabled is on). Paste a token with at least the read role; ' +
      'it is kept in this tab’s session storage until you sign out or close the tab.' }),
    form, error);
  input.focus();
}

function showDenied(err) {
  if (err.status === 401) {
    const hadToken = token.get() !== '';
    token.clear();
    showLogin(hadToken ? `Your token was refused: ${err.message}` : '');
    return;
  }
  stream.stop();
  state.route = { view: 'denied' };
  setTitle('Not allowed');
  live.textContent = 'Not allowed';
  live.className = 'live live-off';
  const protectedMode = /protected mode/i.test(err.message);
  const other = el('button', { type: 'button', text: 'Use another token' });
  other.addEventListener('click', () => {
    token.clear();
    showLogin('');
  });
  main.replaceChildren(
    el('h1', { text: protectedMode ? 'Saga is in protected mode' : 'Not allowed' }),
    el('p', { class: 'error', text: err.message }),
    protectedMode
      ? el('p', { text: 'While auth is off, Saga answers only browsers on its own machine. To use the console from here, ' +
          'an operator turns auth on (auth.enabled = true) and gives you a token, or, on a trusted network, ' +
          'sets server.protected_mode = false.' })
      : el('p', { text: 'The token you signed in with does not allow this. Ask for a token with the read role ' +
          'whose scope includes these services.' }),
    other);
}

function showProblem(err) {
  const box = main.querySelector('#problem') || el('p', { id: 'problem', class: 'error', role: 'alert' });
  box.textContent = `Could not read from Saga: ${err.message} The page retries with the next change.`;
  if (!box.isConnected) main.append(box);
}

// --- helpers ---

function escapeHTML(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

function start() {
  signout.hidden = token.get() === '';
  live.textContent = 'Connecting…';
  live.className = 'live';
  state.streamOpened = false;
  navigate();
  stream.start();
}

signout.addEventListener('click', () => {
  token.clear();
  showLogin('Signed out.');
});
window.addEventListener('hashchange', () => {
  if (state.route?.view === 'login') return;
  if (state.route?.view === 'denied') {
    start();
    return;
  }
  navigate();
});
setInterval(tick, 1000);
setInterval(() => {
  if (state.route?.view === 'health') refresh();
}, HEALTH_REFRESH_MS);
start();
