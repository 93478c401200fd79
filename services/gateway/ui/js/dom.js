// Small DOM helpers: element building (text is always set as text, never parsed as HTML),
// labelled form fields, and showing problem+json errors next to the fields.

/** h('button', {class: 'primary', onclick}, 'Text', child...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== 'string') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : value);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;

/**
 * A labelled input: {label, name, type, value, required, autocomplete, hint, ...attrs}.
 * `name` is the API field path (e.g. "shipping.line1"), so field errors find their input.
 */
export function field({ label, name, type = 'text', hint, options, ...attrs }) {
  const id = `f-${name.replace(/[^a-z0-9]/gi, '-')}-${++uid}`;
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  let control;
  if (type === 'select') {
    control = h('select', { id, name, ...attrs },
      options.map(([value, text]) => h('option', { value, selected: String(attrs.value ?? '') === String(value) }, text)));
  } else if (type === 'textarea') {
    control = h('textarea', { id, name, ...attrs });
  } else if (type === 'checkbox') {
    control = h('input', { id, name, type, ...attrs });
    return h('div', { class: 'field field-check', dataset: { field: name } },
      control, h('label', { for: id }, label),
      h('p', { class: 'field-error', id: errorId, role: 'alert', hidden: true }));
  } else {
    control = h('input', { id, name, type, ...attrs });
  }
  control.setAttribute('aria-describedby', [hintId, errorId].filter(Boolean).join(' '));
  return h('div', { class: 'field', dataset: { field: name } },
    h('label', { for: id }, label, attrs.required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
    control,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    h('p', { class: 'field-error', id: errorId, role: 'alert', hidden: true }));
}

/** A form-level message area (errors and notices). */
export function messageBox() {
  return h('div', { class: 'message', role: 'status', 'aria-live': 'polite', hidden: true });
}

export function showMessage(box, text, kind = 'error') {
  box.className = `message message-${kind}`;
  box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  replace(box, text);
  box.hidden = !text;
}

/** Clears every field error of `form`. */
export function clearErrors(form) {
  for (const p of form.querySelectorAll('.field-error')) {
    p.hidden = true;
    p.textContent = '';
  }
  for (const c of form.querySelectorAll('[aria-invalid]')) c.removeAttribute('aria-invalid');
}

/**
 * Shows an ApiError on `form`: each field error next to its input (by name), the rest and the
 * detail in `box`. Focuses the first invalid input.
 */
export function showErrors(form, box, error) {
  clearErrors(form);
  const unplaced = [];
  let first = null;
  for (const { field: name, message } of error.errors || []) {
    const wrapper = findField(form, name);
    if (!wrapper) {
      unplaced.push(`${name} ${message}`);
      continue;
    }
    const p = wrapper.querySelector('.field-error');
    p.textContent = p.textContent ? `${p.textContent}; ${message}` : capitalise(message);
    p.hidden = false;
    const control = wrapper.querySelector('input, select, textarea');
    control?.setAttribute('aria-invalid', 'true');
    first ??= control;
  }
  const main = error.userMessage ?? error.message;
  const extra = unplaced.filter((u) => !main.includes(u.slice(u.indexOf(' ') + 1)));
  const text = [main, ...extra].filter(Boolean).join(' ');
  showMessage(box, text, 'error');
  (first || box).focus?.();
}

function findField(form, name) {
  const exact = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
  if (exact) return exact;
  // "lines[0].quantity" or "service_area.postal_prefixes[2]": fall back to the list field.
  const base = name.replace(/\[\d+\].*$/, '');
  // "service_area" (a group of inputs): its first input, e.g. "service_area.postal_prefixes".
  return form.querySelector(`[data-field="${CSS.escape(base)}"]`) ||
    form.querySelector(`[data-field^="${CSS.escape(base)}."]`);
}

function capitalise(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

/** The form's values by input name (checkboxes as booleans). */
export function values(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    out[el.name] = el.type === 'checkbox' ? el.checked : el.type === 'password' ? el.value : el.value.trim();
  }
  return out;
}

/** Disables the submit button while `work` runs. */
export async function busy(form, work) {
  const buttons = form.querySelectorAll('button');
  for (const b of buttons) b.disabled = true;
  form.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    for (const b of buttons) b.disabled = false;
    form.removeAttribute('aria-busy');
  }
}

export function formatMoney(money) {
  if (!money) return '';
  const { minor, currency } = money;
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(minor / 100);
  } catch {
    return `${(minor / 100).toFixed(2)} ${currency}`;
  }
}

export function formatDate(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** "OUT_FOR_DELIVERY" → "Out for delivery" */
export function statusLabel(status) {
  if (!status) return '';
  const s = status.toLowerCase().replaceAll('_', ' ');
  return s[0].toUpperCase() + s.slice(1);
}

export function statusBadge(status) {
  return h('span', { class: `badge status-${(status || '').toLowerCase()}`, dataset: { status } }, statusLabel(status));
}
