// The Alternassist demo: the app's data lives in localStorage (JSON arrays of
// objects with `id` and `updatedAt`), written with plain localStorage.setItem
// like the real app does. SyncManager notices those writes and syncs them;
// remote changes arrive as `change` events and the page re-renders.

// The bundle the Worker serves (scripts/build-client.mjs builds it from ./sync-manager.js).
import { SyncManager } from './dist/alternassist-sync.mjs';
import { timeAgo } from './sync-status.js';

const sync = new SyncManager(); // apiBase '/api' on this origin, the seven Alternassist keys
window.sync = sync; // handy in the console (and for the browser tests)

// ------------------------------------------------------------------ data

const read = (key) => {
  try {
    const v = JSON.parse(localStorage.getItem(key) ?? '[]');
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
};
const write = (key, items) => localStorage.setItem(key, JSON.stringify(items));
const newId = (prefix) =>
  `${prefix}-${(globalThis.crypto?.randomUUID?.() ?? Math.random().toString(16).slice(2) + Date.now().toString(16)).slice(0, 12)}`;

function upsert(key, item) {
  const items = read(key);
  const next = { ...item, updatedAt: Date.now() };
  const i = items.findIndex((x) => x.id === item.id);
  if (i >= 0) items[i] = next;
  else items.push(next);
  write(key, items);
}
function removeItem(key, id) {
  write(key, read(key).filter((x) => x.id !== id));
}

const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
const fmtMoney = (n) => money.format(Number(n) || 0);
const fmtDate = (d) => {
  if (!d) return '—';
  const date = new Date(`${d}T00:00:00`);
  return Number.isNaN(date.getTime()) ? d : date.toLocaleDateString('en-US', { month: 'short', day: 'numeric', year: 'numeric' });
};
const esc = (s) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const $ = (sel, root = document) => root.querySelector(sel);
const today = () => new Date().toISOString().slice(0, 10);
const sum = (items, f) => items.reduce((t, x) => t + (Number(f(x)) || 0), 0);

const STATUS_CHIP = {
  Paid: 'ok', Accepted: 'ok', Approved: 'ok', Recorded: 'ok', Outstanding: 'warn', Sent: 'accent',
  'In progress': 'accent', Overdue: 'bad', Declined: 'bad', Draft: '', Sketch: '',
};
const chip = (text) => (text ? `<span class="chip ${STATUS_CHIP[text] ?? ''}">${esc(text)}</span>` : '');

// --------------------------------------------------------- table views

/** The record views: one localStorage key each, edited through a generic form. */
const TABLES = {
  invoices: {
    key: 'outstanding-payments',
    title: 'Invoices',
    noun: 'invoice',
    blurb: 'What clients owe you.',
    fields: [
      { name: 'number', label: 'Invoice #' },
      { name: 'client', label: 'Client', required: true },
      { name: 'project', label: 'Project', full: true },
      { name: 'amount', label: 'Amount', type: 'money' },
      { name: 'dueDate', label: 'Due', type: 'date' },
      { name: 'status', label: 'Status', type: 'select', options: ['Outstanding', 'Overdue', 'Paid'] },
    ],
    defaults: () => ({ status: 'Outstanding', dueDate: today() }),
    stats: (xs) => {
      const open = xs.filter((x) => x.status !== 'Paid');
      return [
        ['Outstanding', fmtMoney(sum(open, (x) => x.amount))],
        ['Overdue', String(xs.filter((x) => x.status === 'Overdue').length)],
        ['Paid', fmtMoney(sum(xs.filter((x) => x.status === 'Paid'), (x) => x.amount)), 'pos'],
      ];
    },
  },
  payments: {
    key: 'alternatone-payments',
    title: 'Payments',
    noun: 'payment',
    blurb: 'Money received.',
    fields: [
      { name: 'date', label: 'Date', type: 'date' },
      { name: 'payer', label: 'From', required: true },
      { name: 'amount', label: 'Amount', type: 'money' },
      { name: 'method', label: 'Method', type: 'select', options: ['Bank transfer', 'Card', 'PayPal', 'Cheque', 'Cash'] },
      { name: 'reference', label: 'Reference', full: true },
    ],
    defaults: () => ({ date: today(), method: 'Bank transfer' }),
    stats: (xs) => {
      const year = String(new Date().getFullYear());
      return [
        ['Received this year', fmtMoney(sum(xs.filter((x) => (x.date ?? '').startsWith(year)), (x) => x.amount)), 'pos'],
        ['Payments', String(xs.length)],
      ];
    },
  },
  accounting: {
    key: 'accountingTransactions',
    title: 'Accounting',
    noun: 'transaction',
    blurb: 'Income and expenses for your books.',
    fields: [
      { name: 'date', label: 'Date', type: 'date' },
      { name: 'type', label: 'Type', type: 'select', options: ['Income', 'Expense'] },
      { name: 'description', label: 'Description', required: true, full: true },
      { name: 'category', label: 'Category', type: 'select', options: ['Composition', 'Licensing', 'Musicians', 'Studio', 'Equipment', 'Software', 'Travel', 'Other'] },
      { name: 'amount', label: 'Amount', type: 'money' },
    ],
    defaults: () => ({ date: today(), type: 'Expense', category: 'Software' }),
    stats: (xs) => {
      const income = sum(xs.filter((x) => x.type === 'Income'), (x) => x.amount);
      const expenses = sum(xs.filter((x) => x.type !== 'Income'), (x) => x.amount);
      return [
        ['Income', fmtMoney(income), 'pos'],
        ['Expenses', fmtMoney(expenses), 'neg'],
        ['Net', fmtMoney(income - expenses), income >= expenses ? 'pos' : 'neg'],
      ];
    },
  },
  cues: {
    key: 'cue-tracker-sessions',
    title: 'Cue sessions',
    noun: 'session',
    blurb: 'Time spent on each cue.',
    fields: [
      { name: 'date', label: 'Date', type: 'date' },
      { name: 'project', label: 'Project', required: true },
      { name: 'cue', label: 'Cue' },
      { name: 'minutes', label: 'Minutes', type: 'number' },
      { name: 'status', label: 'Status', type: 'select', options: ['Sketch', 'In progress', 'Approved', 'Recorded'] },
      { name: 'notes', label: 'Notes', type: 'textarea', full: true },
    ],
    defaults: () => ({ date: today(), status: 'In progress', minutes: 60 }),
    stats: (xs) => {
      const mins = sum(xs, (x) => x.minutes);
      return [
        ['Time logged', `${Math.floor(mins / 60)} h ${mins % 60} min`],
        ['Sessions', String(xs.length)],
        ['Approved cues', String(xs.filter((x) => x.status === 'Approved' || x.status === 'Recorded').length), 'pos'],
      ];
    },
  },
  estimates: {
    key: 'estimates',
    title: 'Estimates',
    noun: 'estimate',
    blurb: 'Quotes sent to prospective clients.',
    fields: [
      { name: 'client', label: 'Client', required: true },
      { name: 'date', label: 'Date', type: 'date' },
      { name: 'project', label: 'Project', full: true },
      { name: 'amount', label: 'Amount', type: 'money' },
      { name: 'status', label: 'Status', type: 'select', options: ['Draft', 'Sent', 'Accepted', 'Declined'] },
    ],
    defaults: () => ({ date: today(), status: 'Draft' }),
    stats: (xs) => [
      ['Open', fmtMoney(sum(xs.filter((x) => x.status === 'Sent' || x.status === 'Draft'), (x) => x.amount))],
      ['Accepted', fmtMoney(sum(xs.filter((x) => x.status === 'Accepted'), (x) => x.amount)), 'pos'],
    ],
  },
};

function cell(field, item) {
  const v = item[field.name];
  if (field.type === 'money') return `<td class="num">${fmtMoney(v)}</td>`;
  if (field.type === 'date') return `<td>${esc(fmtDate(v))}</td>`;
  if (field.type === 'number') return `<td class="num">${esc(v ?? '')}</td>`;
  if (field.name === 'status' || field.name === 'type') return `<td>${chip(v)}</td>`;
  if (field.type === 'textarea' || field.full) return `<td class="wrap">${esc(v ?? '')}</td>`;
  return `<td>${esc(v ?? '')}</td>`;
}

function renderTable(name) {
  const t = TABLES[name];
  const items = read(t.key);
  const sortField = t.fields.find((f) => f.type === 'date');
  if (sortField) items.sort((a, b) => String(b[sortField.name] ?? '').localeCompare(String(a[sortField.name] ?? '')));
  const head = `<div class="view-head">
      <div><h1>${t.title}</h1><p class="muted">${t.blurb}</p></div>
      <span class="spacer"></span>
      <button type="button" class="primary" data-action="new">+ New ${t.noun}</button>
    </div>`;
  if (!items.length) return head + emptyState(`No ${t.noun}s yet`, `Add your first ${t.noun}, or load some sample data to try syncing.`);
  const stats = t
    .stats(items)
    .map(([label, value, cls]) => `<div class="stat"><div class="label">${label}</div><div class="value ${cls ?? ''}">${esc(value)}</div></div>`)
    .join('');
  const cols = t.fields.filter((f) => f.type !== 'textarea');
  return `${head}<div class="stats">${stats}</div>
    <div class="table-wrap"><table>
      <thead><tr>${cols.map((f) => `<th class="${f.type === 'money' || f.type === 'number' ? 'num' : ''}">${f.label}</th>`).join('')}</tr></thead>
      <tbody>${items.map((it) => `<tr data-id="${esc(it.id)}">${cols.map((f) => cell(f, it)).join('')}</tr>`).join('')}</tbody>
    </table></div>`;
}

function emptyState(title, text) {
  return `<div class="empty"><h2>${esc(title)}</h2><p class="muted">${esc(text)}</p>
    <div class="actions"><button type="button" class="primary" data-action="new">Add one</button>
    <button type="button" class="ghost" data-action="sample">Load sample data</button></div></div>`;
}

// --------------------------------------------------------------- kanban

const COLUMN_COLORS = ['#8b93a7', '#5b4bdb', '#d08a1e', '#1f8a4c', '#c2362f', '#2f80c2'];
const PROJECT_FIELDS = [
  { name: 'title', label: 'Project', required: true, full: true },
  { name: 'client', label: 'Client' },
  { name: 'fee', label: 'Fee', type: 'money' },
  { name: 'dueDate', label: 'Due', type: 'date' },
  { name: 'columnId', label: 'Stage', type: 'select' },
  { name: 'notes', label: 'Notes', type: 'textarea', full: true },
];
const COLUMN_FIELDS = [{ name: 'title', label: 'Column name', required: true, full: true }];

function renderBoard() {
  const columns = read('kanban-columns');
  const projects = read('kanban-projects');
  const head = `<div class="view-head">
      <div><h1>Projects</h1><p class="muted">Every score from first call to final delivery.</p></div>
      <span class="spacer"></span>
      ${columns.length ? '<button type="button" class="ghost" data-action="new-column">+ Column</button><button type="button" class="primary" data-action="new-card">+ New project</button>' : ''}
    </div>`;
  if (!columns.length) {
    return head + `<div class="empty"><h2>Your board is empty</h2>
      <p class="muted">Create the stages of your workflow, or load sample data to see sync in action.</p>
      <div class="actions"><button type="button" class="primary" data-action="new-column">Add a column</button>
      <button type="button" class="ghost" data-action="sample">Load sample data</button></div></div>`;
  }
  const known = new Set(columns.map((c) => c.id));
  const cols = columns
    .map((col, i) => {
      // Cards whose column was removed on another device land in the first column.
      const cards = projects.filter((p) => p.columnId === col.id || (i === 0 && !known.has(p.columnId)));
      return `<section class="column" data-column="${esc(col.id)}">
        <div class="column-head">
          <span class="dot" style="background:${COLUMN_COLORS[i % COLUMN_COLORS.length]}"></span>
          <h2>${esc(col.title)}</h2><span class="count">${cards.length}</span>
          <button type="button" class="ghost icon" data-action="edit-column" data-id="${esc(col.id)}" aria-label="Edit column ${esc(col.title)}">⋯</button>
        </div>
        <div class="cards">${cards.map(cardHtml).join('')}</div>
        <button type="button" class="add-card" data-action="new-card" data-column="${esc(col.id)}">+ Add project</button>
      </section>`;
    })
    .join('');
  return `${head}<div class="board">${cols}</div>`;
}

function cardHtml(p) {
  const meta = [
    p.client ? `<span>${esc(p.client)}</span>` : '',
    p.fee ? `<span>${fmtMoney(p.fee)}</span>` : '',
    p.dueDate ? `<span>Due ${esc(fmtDate(p.dueDate))}</span>` : '',
  ].join('');
  return `<button type="button" class="card" draggable="true" data-card="${esc(p.id)}">
      <div class="title">${esc(p.title)}</div>${meta ? `<div class="meta">${meta}</div>` : ''}</button>`;
}

// --------------------------------------------------------------- editing

const editDialog = $('#edit-dialog');
let editing = null; // {key, fields, item, isNew}

function openEditor({ key, fields, item, isNew, title }) {
  editing = { key, fields, item, isNew };
  $('#edit-title').textContent = title;
  $('#edit-delete').hidden = isNew;
  $('#edit-fields').innerHTML = fields
    .map((f) => {
      const v = item[f.name] ?? '';
      const attrs = `name="${f.name}" ${f.required ? 'required' : ''}`;
      let input;
      if (f.type === 'select') {
        const options = f.options ?? read('kanban-columns').map((c) => ({ value: c.id, label: c.title }));
        input = `<select ${attrs}>${options
          .map((o) => (typeof o === 'string' ? { value: o, label: o } : o))
          .map((o) => `<option value="${esc(o.value)}" ${o.value === v ? 'selected' : ''}>${esc(o.label)}</option>`)
          .join('')}</select>`;
      } else if (f.type === 'textarea') {
        input = `<textarea ${attrs}>${esc(v)}</textarea>`;
      } else {
        const type = f.type === 'money' || f.type === 'number' ? 'number' : f.type === 'date' ? 'date' : 'text';
        const step = f.type === 'money' ? 'step="0.01" min="0"' : f.type === 'number' ? 'step="1" min="0"' : '';
        input = `<input type="${type}" ${step} ${attrs} value="${esc(v)}">`;
      }
      return `<label class="${f.full ? 'full' : ''}">${f.label}${input}</label>`;
    })
    .join('');
  editDialog.showModal();
  $('#edit-fields [name]')?.focus();
}

$('#edit-form').addEventListener('submit', (e) => {
  e.preventDefault();
  if (!editing) return;
  const form = e.currentTarget;
  const missing = editing.fields.find((f) => f.required && !form.elements[f.name].value.trim());
  if (missing) {
    form.elements[missing.name].focus();
    return;
  }
  const item = { ...editing.item };
  for (const f of editing.fields) {
    const raw = form.elements[f.name].value;
    item[f.name] = f.type === 'money' || f.type === 'number' ? (raw === '' ? null : Number(raw)) : raw.trim();
  }
  upsert(editing.key, item);
  editDialog.close();
  editing = null;
  render();
});
$('#edit-cancel').addEventListener('click', () => editDialog.close());
$('#edit-delete').addEventListener('click', () => {
  if (!editing) return;
  const what = editing.item.title ?? editing.item.client ?? editing.item.description ?? 'this item';
  if (!confirm(`Delete ${what}?`)) return;
  removeItem(editing.key, editing.item.id);
  editDialog.close();
  editing = null;
  render();
});

// --------------------------------------------------------------- rendering

let current = location.hash.slice(1) in TABLES || location.hash === '#projects' ? location.hash.slice(1) : 'projects';
const view = $('#view');

function render() {
  view.innerHTML = current === 'projects' ? renderBoard() : renderTable(current);
  for (const b of document.querySelectorAll('.tabs button')) {
    if (b.dataset.view === current) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
}

document.querySelector('.tabs').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-view]');
  if (!b) return;
  current = b.dataset.view;
  history.replaceState(null, '', `#${current}`);
  render();
});

view.addEventListener('click', (e) => {
  const el = e.target.closest('[data-action], [data-card], tr[data-id]');
  if (!el) return;
  const action = el.dataset.action;
  if (action === 'sample') return loadSampleData();
  if (current === 'projects') {
    if (action === 'new-column') {
      return openEditor({ key: 'kanban-columns', fields: COLUMN_FIELDS, item: { id: newId('col') }, isNew: true, title: 'New column' });
    }
    if (action === 'edit-column') {
      const col = read('kanban-columns').find((c) => c.id === el.dataset.id);
      if (col) openEditor({ key: 'kanban-columns', fields: COLUMN_FIELDS, item: col, isNew: false, title: 'Edit column' });
      return;
    }
    if (action === 'new-card') {
      const columnId = el.dataset.column ?? read('kanban-columns')[0]?.id;
      return openEditor({ key: 'kanban-projects', fields: PROJECT_FIELDS, item: { id: newId('prj'), columnId }, isNew: true, title: 'New project' });
    }
    if (el.dataset.card) {
      const p = read('kanban-projects').find((x) => x.id === el.dataset.card);
      if (p) openEditor({ key: 'kanban-projects', fields: PROJECT_FIELDS, item: p, isNew: false, title: 'Edit project' });
    }
    return;
  }
  const t = TABLES[current];
  if (action === 'new') {
    return openEditor({ key: t.key, fields: t.fields, item: { id: newId(t.noun.slice(0, 3)), ...t.defaults() }, isNew: true, title: `New ${t.noun}` });
  }
  if (el.dataset.id) {
    const item = read(t.key).find((x) => String(x.id) === el.dataset.id);
    if (item) openEditor({ key: t.key, fields: t.fields, item, isNew: false, title: `Edit ${t.noun}` });
  }
});

// Drag a card to another column.
let dragged = null;
view.addEventListener('dragstart', (e) => {
  const card = e.target.closest?.('[data-card]');
  if (!card) return;
  dragged = card.dataset.card;
  card.classList.add('dragging');
  e.dataTransfer.effectAllowed = 'move';
  e.dataTransfer.setData('text/plain', dragged);
});
view.addEventListener('dragend', () => {
  dragged = null;
  for (const el of view.querySelectorAll('.dragging, .drop')) el.classList.remove('dragging', 'drop');
});
view.addEventListener('dragover', (e) => {
  const col = e.target.closest?.('[data-column].column');
  if (!col || !dragged) return;
  e.preventDefault();
  for (const el of view.querySelectorAll('.drop')) if (el !== col) el.classList.remove('drop');
  col.classList.add('drop');
});
view.addEventListener('drop', (e) => {
  const col = e.target.closest?.('[data-column].column');
  if (!col || !dragged) return;
  e.preventDefault();
  const p = read('kanban-projects').find((x) => x.id === dragged);
  if (p && p.columnId !== col.dataset.column) upsert('kanban-projects', { ...p, columnId: col.dataset.column });
  render();
});

// ------------------------------------------------------------ sample data

function loadSampleData() {
  const now = Date.now();
  const d = (days) => new Date(now + days * 864e5).toISOString().slice(0, 10);
  const stamp = (items) => items.map((x) => ({ ...x, updatedAt: now }));
  const cols = [
    { id: 'col-inquiry', title: 'Inquiry' },
    { id: 'col-writing', title: 'Writing' },
    { id: 'col-review', title: 'Client review' },
    { id: 'col-delivered', title: 'Delivered' },
  ];
  const samples = {
    'kanban-columns': cols,
    'kanban-projects': [
      { id: 'prj-northern', title: 'Northern Lights (feature)', client: 'Halcyon Films', fee: 18000, dueDate: d(41), columnId: 'col-writing', notes: '42 min of score, hybrid orchestra.' },
      { id: 'prj-tidewater', title: 'Tidewater, S2', client: 'Brightwave TV', fee: 12500, dueDate: d(20), columnId: 'col-writing' },
      { id: 'prj-orbit', title: 'Orbit energy drink spot', client: 'Kite & Key Agency', fee: 3200, dueDate: d(6), columnId: 'col-review' },
      { id: 'prj-lantern', title: 'Lantern (short film)', client: 'Mira Okafor', fee: 1500, dueDate: d(58), columnId: 'col-inquiry' },
      { id: 'prj-podcast', title: 'Field Notes podcast theme', client: 'Field Notes Media', fee: 900, columnId: 'col-inquiry' },
      { id: 'prj-atlas', title: 'Atlas game trailer', client: 'Parallax Games', fee: 4800, dueDate: d(-12), columnId: 'col-delivered' },
    ],
    'outstanding-payments': [
      { id: 'inv-1042', number: 'INV-1042', client: 'Parallax Games', project: 'Atlas game trailer', amount: 4800, dueDate: d(-3), status: 'Overdue' },
      { id: 'inv-1043', number: 'INV-1043', client: 'Halcyon Films', project: 'Northern Lights, first instalment', amount: 6000, dueDate: d(14), status: 'Outstanding' },
      { id: 'inv-1041', number: 'INV-1041', client: 'Brightwave TV', project: 'Tidewater S1 licensing', amount: 2250, dueDate: d(-30), status: 'Paid' },
    ],
    'alternatone-payments': [
      { id: 'pay-1', date: d(-28), payer: 'Brightwave TV', amount: 2250, method: 'Bank transfer', reference: 'INV-1041' },
      { id: 'pay-2', date: d(-9), payer: 'Mira Okafor', amount: 500, method: 'PayPal', reference: 'Lantern deposit' },
    ],
    accountingTransactions: [
      { id: 'txn-1', date: d(-28), type: 'Income', description: 'Tidewater S1 licensing', category: 'Licensing', amount: 2250 },
      { id: 'txn-2', date: d(-20), type: 'Expense', description: 'String quartet session', category: 'Musicians', amount: 1400 },
      { id: 'txn-3', date: d(-15), type: 'Expense', description: 'Sample library upgrade', category: 'Software', amount: 349 },
      { id: 'txn-4', date: d(-9), type: 'Income', description: 'Lantern deposit', category: 'Composition', amount: 500 },
    ],
    'cue-tracker-sessions': [
      { id: 'cue-1', date: d(-2), project: 'Northern Lights', cue: '1M3', minutes: 150, status: 'In progress', notes: 'Aurora theme, low strings.' },
      { id: 'cue-2', date: d(-1), project: 'Northern Lights', cue: '2M1', minutes: 95, status: 'Sketch' },
      { id: 'cue-3', date: d(-4), project: 'Tidewater S2', cue: '201-M5', minutes: 120, status: 'Approved' },
    ],
    estimates: [
      { id: 'est-1', client: 'Mira Okafor', project: 'Lantern (short film)', amount: 1500, date: d(-10), status: 'Accepted' },
      { id: 'est-2', client: 'Field Notes Media', project: 'Podcast theme and stings', amount: 900, date: d(-3), status: 'Sent' },
      { id: 'est-3', client: 'Northbound Studio', project: 'Documentary series, 6 x 45 min', amount: 24000, date: d(-1), status: 'Draft' },
    ],
  };
  // Only fills what is empty: never clobbers real data.
  for (const [key, items] of Object.entries(samples)) {
    if (!read(key).length) write(key, stamp(items));
  }
  render();
  toast('Sample data added');
}

// ------------------------------------------------------------ sign-in

const authDialog = $('#auth-dialog');
const authForm = $('#auth-form');
let authMode = 'login';

function setAuthMode(mode) {
  authMode = mode;
  for (const b of authForm.querySelectorAll('.segmented button')) {
    b.setAttribute('aria-selected', String(b.dataset.mode === mode));
  }
  $('#auth-title').textContent = mode === 'login' ? 'Sign in to sync' : 'Create your sync account';
  $('#auth-submit').textContent = mode === 'login' ? 'Sign in' : 'Create account';
  authForm.elements.password.autocomplete = mode === 'login' ? 'current-password' : 'new-password';
  $('#auth-error').textContent = '';
}

authForm.querySelector('.segmented').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-mode]');
  if (b) setAuthMode(b.dataset.mode);
});

const AUTH_ERRORS = {
  invalid_credentials: 'That email and password do not match.',
  email_taken: 'An account with this email already exists. Sign in instead.',
  weak_password: 'Use at least 8 characters for the password.',
  invalid_email: 'That does not look like an email address.',
  rate_limited: 'Too many attempts. Wait a minute and try again.',
  network: 'Cannot reach the sync server. Check your connection.',
};

authForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const email = authForm.elements.email.value.trim();
  const password = authForm.elements.password.value;
  const deviceName = authForm.elements.deviceName.value.trim() || undefined;
  const error = $('#auth-error');
  if (!email || !password) {
    error.textContent = 'Enter your email and a password.';
    return;
  }
  const submit = $('#auth-submit');
  submit.disabled = true;
  error.textContent = '';
  try {
    if (authMode === 'login') await sync.login(email, password, deviceName);
    else await sync.register(email, password, deviceName);
    authForm.reset();
    authDialog.close();
    toast(authMode === 'login' ? `Signed in as ${email}` : 'Account created. This device now syncs.');
  } catch (err) {
    error.textContent = AUTH_ERRORS[err.code] ?? err.message;
  } finally {
    submit.disabled = false;
    renderAccount();
  }
});
$('#auth-skip').addEventListener('click', () => authDialog.close());
function showAuth(mode = 'login') {
  setAuthMode(mode);
  authDialog.showModal();
  authForm.elements.email.focus();
}
$('#signin-btn').addEventListener('click', () => showAuth());

// ------------------------------------------------------------ account menu

const accountBtn = $('#account-btn');
const accountMenu = $('#account-menu');

function renderAccount() {
  const email = sync.email ?? '';
  $('#signin-btn').hidden = sync.signedIn;
  accountBtn.hidden = !sync.signedIn;
  accountBtn.textContent = email.slice(0, 1) || '?';
  accountBtn.title = email;
  $('#account-email').textContent = email;
  const n = sync.onlineDevices.length;
  $('#account-devices').textContent = n ? `${n} ${n === 1 ? 'device' : 'devices'} online` : '';
  $('#history-btn').hidden = !sync.signedIn;
  if (!sync.signedIn) {
    accountMenu.hidden = true;
    devicesPanel.hidden = historyPanel.hidden = true;
  }
  if (sync.signedIn && authDialog.open) authDialog.close(); // signed in elsewhere (another tab, the console)
}

accountBtn.addEventListener('click', () => {
  accountMenu.hidden = !accountMenu.hidden;
  accountBtn.setAttribute('aria-expanded', String(!accountMenu.hidden));
});
document.addEventListener('click', (e) => {
  if (!accountMenu.hidden && !e.target.closest('#account')) accountMenu.hidden = true;
});
$('#signout-btn').addEventListener('click', async () => {
  accountMenu.hidden = true;
  await sync.logout();
  toast('Signed out. Your data stays on this device.');
});

// ------------------------------------------------------------ conflict log

const KEY_LABELS = {
  'kanban-projects': 'Projects',
  'kanban-columns': 'Board columns',
  'outstanding-payments': 'Invoices',
  'alternatone-payments': 'Payments',
  accountingTransactions: 'Accounting',
  'cue-tracker-sessions': 'Cue sessions',
  estimates: 'Estimates',
};
const panel = $('#conflict-panel');

function renderConflicts() {
  const list = sync.conflicts;
  const badge = $('#conflict-count');
  badge.hidden = list.length === 0;
  badge.textContent = String(list.length);
  $('#conflict-list').innerHTML = list.length
    ? list
        .map((c) => {
          const what = KEY_LABELS[c.key] ?? c.key;
          const text =
            c.resolution === 'merged'
              ? c.lostElements?.length
                ? `Edits from two devices were merged; ${c.lostElements.length} ${c.lostElements.length === 1 ? 'item' : 'items'} changed on both took the other version (kept here: restore brings it back).`
                : 'Edits from two devices were merged; nothing was lost.'
              : c.winner === 'local'
                ? 'Your edit was newer and won. The other version is kept on the server.'
                : 'An edit from another device was newer and won. Your version is kept.';
          const restore = c.restore ? `<div class="actions"><button type="button" class="ghost small" data-restore="${esc(c.id)}">Restore the other version</button></div>` : '';
          return `<li><div class="what">${esc(what)}</div><div>${esc(text)}</div><div class="when">${esc(timeAgo(c.at))}</div>${restore}</li>`;
        })
        .join('')
    : '<li class="empty-log">No conflicts. Edits on your devices have all fitted together.</li>';
}

/** Shows one side panel (or hides it when it is open); the others close. */
function togglePanel(which) {
  const show = which.hidden;
  for (const p of [panel, devicesPanel, historyPanel]) p.hidden = true;
  which.hidden = !show;
  return show;
}

$('#conflicts-btn').addEventListener('click', () => {
  togglePanel(panel);
  renderConflicts();
});
$('#conflicts-close').addEventListener('click', () => (panel.hidden = true));
$('#conflict-list').addEventListener('click', (e) => {
  const b = e.target.closest('[data-restore]');
  const c = b && sync.conflicts.find((x) => x.id === b.dataset.restore);
  if (!c?.restore) return;
  c.restore();
  toast(`${KEY_LABELS[c.key] ?? c.key}: the other version is back`);
  render();
});

// ---------------------------------------------------------------- devices

const devicesPanel = $('#devices-panel');
const fmtDay = (ms) => new Date(ms).toLocaleDateString('en-US', { month: 'short', day: 'numeric', year: 'numeric' });

async function renderDevices() {
  const list = $('#device-list');
  let devices;
  try {
    devices = await sync.devices();
  } catch (err) {
    list.innerHTML = `<li class="empty-log">Could not load the devices: ${esc(err.message)}</li>`;
    return;
  }
  list.innerHTML = devices
    .map((d) => {
      const seen = d.online ? 'Online now' : `Last seen ${timeAgo(d.lastSeenAt)}`;
      return `<li class="${d.current ? 'current' : ''}" data-device="${esc(d.id)}">
        <div class="name"><span class="dot ${d.online ? 'online' : ''}" title="${d.online ? 'Online' : 'Offline'}"></span>
          ${esc(d.name || 'Unnamed device')}${d.current ? ' <span class="chip accent">This device</span>' : ''}</div>
        <div class="meta">Signed in ${esc(fmtDay(d.createdAt))} · ${esc(seen)}</div>
        <div class="actions"><button type="button" class="danger ghost small" data-revoke="${esc(d.id)}">Sign out this device</button></div>
      </li>`;
    })
    .join('');
}

$('#devices-btn').addEventListener('click', () => {
  accountMenu.hidden = true;
  if (togglePanel(devicesPanel)) renderDevices();
});
$('#devices-close').addEventListener('click', () => (devicesPanel.hidden = true));
$('#device-list').addEventListener('click', async (e) => {
  const b = e.target.closest('[data-revoke]');
  if (!b) return;
  const id = b.dataset.revoke;
  const self = id === sync.deviceId;
  b.disabled = true;
  try {
    await sync.revokeDevice(id);
    toast(self ? 'Signed out. Your data stays on this device.' : 'That device is signed out.');
  } catch (err) {
    toast(`Could not sign that device out: ${err.message}`, 6000);
  }
  if (!self) renderDevices();
});
sync.on('presence', () => {
  if (!devicesPanel.hidden) renderDevices();
});

// ------------------------------------------------------- export and import

$('#export-btn').addEventListener('click', async () => {
  accountMenu.hidden = true;
  try {
    const doc = await sync.exportData();
    const day = String(doc.exportedAt ?? new Date().toISOString()).slice(0, 10);
    const url = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' }));
    const link = Object.assign(document.createElement('a'), { href: url, download: `alternassist-sync-export-${day}.json` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    const n = Object.keys(doc.data ?? {}).length;
    toast(`Exported ${n} ${n === 1 ? 'kind of data' : 'kinds of data'}`);
  } catch (err) {
    toast(`Export failed: ${err.message}`, 6000);
  }
});

const IMPORT_ERRORS = {
  invalid_json: 'That file is not valid JSON.',
  invalid_request: 'That file is not an alternassist-sync export.',
  invalid_key: 'That file holds a name that cannot be synced.',
  value_too_large: 'That file holds data too large to sync.',
  payload_too_large: 'That file is too large to import.',
  rate_limited: 'Too many changes right now. Wait a minute and try again.',
  network: 'Cannot reach the sync server. Check your connection.',
};

$('#import-btn').addEventListener('click', () => {
  accountMenu.hidden = true;
  $('#import-file').click();
});
$('#import-file').addEventListener('change', async (e) => {
  const file = e.target.files?.[0];
  e.target.value = ''; // the same file can be picked again
  if (!file) return;
  try {
    const res = await sync.importData(await file.text());
    const n = Object.keys(res.versions).length;
    const c = res.conflicts.length;
    toast(
      `Import finished: ${n} ${n === 1 ? 'kind of data' : 'kinds of data'}, ${res.synced.length} updated` +
        (c ? `, ${c} ${c === 1 ? 'conflict' : 'conflicts'} resolved` : ''),
      6000,
    );
  } catch (err) {
    toast(`Import failed: ${IMPORT_ERRORS[err.code] ?? err.message}`, 6000);
  }
  render();
});

// ---------------------------------------------------------------- history

const historyPanel = $('#history-panel');
const historyKey = $('#history-key');
historyKey.innerHTML = sync.keys.map((k) => `<option value="${esc(k)}">${esc(KEY_LABELS[k] ?? k)}</option>`).join('');
const fmtSize = (n) => (n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1048576).toFixed(1)} MB`);

async function renderHistory() {
  const key = historyKey.value;
  const list = $('#history-list');
  let versions;
  try {
    versions = await sync.history(key);
  } catch (err) {
    list.innerHTML = `<li class="empty-log">Could not load the history: ${esc(err.message)}</li>`;
    return;
  }
  if (historyKey.value !== key) return; // another key was picked meanwhile
  list.innerHTML = versions.length
    ? versions
        .map((h) => {
          const chips = `${h.current ? '<span class="chip accent">Current</span>' : ''}${h.deleted ? '<span class="chip bad">Deleted</span>' : ''}`;
          const who = h.deviceName ?? 'a device since signed out';
          const restore = h.current ? '' : `<div class="actions"><button type="button" class="ghost small" data-restore-version="${h.version}">Restore</button></div>`;
          return `<li class="${h.current ? 'current' : ''}" data-version="${h.version}">
            <div class="name">Version ${h.version} ${chips}</div>
            <div class="meta">${esc(timeAgo(h.updatedAt))} · ${esc(who)}${h.deleted ? '' : ` · ${esc(fmtSize(h.size))}`}</div>${restore}</li>`;
        })
        .join('')
    : '<li class="empty-log">Nothing saved for this yet.</li>';
}

$('#history-btn').addEventListener('click', () => {
  if (!togglePanel(historyPanel)) return;
  historyKey.value = current === 'projects' ? 'kanban-projects' : TABLES[current].key;
  renderHistory();
});
$('#history-close').addEventListener('click', () => (historyPanel.hidden = true));
historyKey.addEventListener('change', renderHistory);
$('#history-list').addEventListener('click', async (e) => {
  const b = e.target.closest('[data-restore-version]');
  if (!b) return;
  const key = historyKey.value;
  b.disabled = true;
  try {
    const res = await sync.restore(key, Number(b.dataset.restoreVersion));
    toast(`${KEY_LABELS[key] ?? key}: version ${b.dataset.restoreVersion} restored as version ${res.version}`);
  } catch (err) {
    toast(`Could not restore: ${err.message}`, 6000);
  }
  render();
  renderHistory();
});
sync.on('change', ({ key }) => {
  if (!historyPanel.hidden && key === historyKey.value) renderHistory();
});

// ------------------------------------------------------------------ misc

let toastTimer = null;
function toast(text, ms = 3000) {
  let el = $('.toast');
  if (!el) {
    el = document.createElement('div');
    el.className = 'toast';
    el.setAttribute('role', 'status');
    document.body.append(el);
  }
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), ms);
}

// ------------------------------------------------------------------ wiring

$('sync-status').manager = sync;
sync.on('change', () => {
  // Remote edits, merges and other tabs: redraw (an open editor keeps its form).
  render();
});
sync.on('conflict', (c) => {
  renderConflicts();
  if (c.resolution !== 'merged') toast(`${KEY_LABELS[c.key] ?? c.key}: a conflicting edit was resolved. See the conflict log.`);
});
sync.on('presence', renderAccount);
sync.on('status', renderAccount);
sync.on('signedout', ({ reason }) => {
  renderAccount();
  if (reason === 'revoked') {
    toast('This device was signed out of sync. Your data is still here.');
    showAuth();
  }
});
window.addEventListener('hashchange', () => {
  const name = location.hash.slice(1);
  if (name === 'projects' || name in TABLES) {
    current = name;
    render();
  }
});

render();
renderAccount();
renderConflicts();
sync.start();
// (A sign-in that storage lost is looked for in IndexedDB first.)
sync.ready.then(() => {
  if (!sync.signedIn) showAuth();
});
