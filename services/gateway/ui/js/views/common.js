// What every view shares: the page frame, error handling (session expiry sends the user to
// the login page with a message), a one-shot flash message and polling.

import { SessionExpired } from '../api.js';
import { h, messageBox, showErrors, showMessage } from '../dom.js';
import { navigate } from '../router.js';

let flash = null;

/** A message shown once, on the next page (e.g. "Your session expired"). */
export function setFlash(text, kind = 'info') {
  flash = { text, kind };
}

export function page(title, ...children) {
  const box = messageBox();
  if (flash) {
    showMessage(box, flash.text, flash.kind);
    flash = null;
  }
  return h('section', { class: 'page', 'aria-labelledby': 'page-title' },
    h('h1', { id: 'page-title' }, title), box, ...children);
}

/** The page's top message box. */
export function pageMessage(node) {
  return node.querySelector('.message');
}

/**
 * Shows `error`: a dead session goes to the login page (with a message and the way back);
 * field errors go next to their fields when a form is given; the rest into `box`.
 */
export function handle(error, { form, box } = {}) {
  if (error instanceof SessionExpired) {
    setFlash(error.userMessage, 'error');
    const next = location.pathname + location.search;
    navigate(`/login?next=${encodeURIComponent(next)}`, { replace: true });
    return;
  }
  if (form && box) {
    showErrors(form, box, error);
  } else if (box) {
    showMessage(box, error.userMessage ?? String(error), 'error');
  } else {
    console.error(error);
  }
}

/** Calls `fn` now and every `ms` while the view is shown; returns the stop function. */
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export function loading(text = 'Loading…') {
  return h('p', { class: 'loading', role: 'status' }, text);
}

export function emptyState(text, ...actions) {
  return h('div', { class: 'empty' }, h('p', {}, text), ...actions);
}

/** "12.50" → 1250; NaN when not a price. */
export function toMinor(text) {
  const s = String(text).trim().replace(',', '.');
  if (!/^\d+(\.\d{1,2})?$/.test(s)) return NaN;
  const [units, cents = ''] = s.split('.');
  return Number(units) * 100 + Number(cents.padEnd(2, '0'));
}

export function fromMinor(minor) {
  return (minor / 100).toFixed(2);
}
