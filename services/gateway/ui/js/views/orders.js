// Order history and one order, both with live status (polled while shown).

import * as api from '../api.js';
import { formatDate, formatMoney, h, replace, statusBadge, statusLabel } from '../dom.js';
import { emptyState, handle, page, pageMessage, poll } from './common.js';

const LIST_POLL_MS = 5000;
const ORDER_POLL_MS = 2000;
const FINAL = new Set(['DELIVERED', 'CANCELLED']);
const CANCELLABLE = new Set(['PLACED', 'CONFIRMED', 'PARTNER_ASSIGNED']);
const STEPS = ['PLACED', 'CONFIRMED', 'PARTNER_ASSIGNED', 'PICKED_UP', 'OUT_FOR_DELIVERY', 'DELIVERED'];

export function list() {
  const node = page('Your orders');
  const box = pageMessage(node);
  const body = h('div', { 'aria-live': 'polite' });
  node.append(body);
  let first = []; // the newest page, refreshed while shown
  let older = []; // pages loaded with "Show older orders"
  let cursor = null;

  let drawn = null;
  const draw = () => {
    // Redraw only on change, so polling never steals the keyboard focus.
    const signature = JSON.stringify([first, older, cursor]);
    if (signature === drawn) return;
    drawn = signature;
    const ids = new Set(first.map((o) => o.id));
    const shown = [...first, ...older.filter((o) => !ids.has(o.id))];
    if (!shown.length) {
      replace(body, emptyState('You have no orders yet.', h('a', { href: '/search', class: 'button' }, 'Start shopping')));
      return;
    }
    replace(body,
      h('ul', { class: 'order-list', 'aria-label': 'Orders' }, shown.map((o) => h('li', { class: 'order-row', dataset: { orderId: o.id } },
        h('a', { href: `/orders/${encodeURIComponent(o.id)}` }, `Order ${o.id.slice(0, 8)}`),
        h('span', { class: 'muted' }, formatDate(o.placed_at)),
        h('span', {}, `${o.item_count} item${o.item_count === 1 ? '' : 's'} · ${formatMoney(o.total)}`),
        statusBadge(o.status)))),
      cursor ? h('button', { type: 'button', onclick: more }, 'Show older orders') : null);
  };
  async function more() {
    try {
      const next = await api.orders(cursor);
      older = [...older, ...next.items];
      cursor = next.next_cursor || null;
      draw();
    } catch (error) {
      handle(error, { box });
    }
  }
  const stop = poll(async () => {
    try {
      const page1 = await api.orders();
      first = page1.items;
      if (!older.length) cursor = page1.next_cursor || null;
      draw();
    } catch (error) {
      handle(error, { box });
    }
  }, LIST_POLL_MS);
  return { title: 'Orders', node, cleanup: stop };
}

export function detail({ id }) {
  const node = page('Order');
  const box = pageMessage(node);
  const body = h('div', {});
  const statusNow = h('p', { class: 'order-status' }, 'Status: ', h('span', { id: 'order-status', role: 'status', 'aria-live': 'polite' }, '…'));
  node.append(statusNow, body);
  let stop = () => {};
  let lastStatus = null;
  let drawn = null;

  const draw = (order, delivery) => {
    const signature = JSON.stringify([order, delivery?.partner]);
    if (signature === drawn) return;
    drawn = signature;
    node.querySelector('h1').textContent = `Order ${order.id.slice(0, 8)}`;
    const live = node.querySelector('#order-status');
    if (lastStatus !== order.status) {
      replace(live, statusBadge(order.status));
      lastStatus = order.status;
    }
    const partner = order.partner || delivery?.partner;
    const reached = STEPS.indexOf(order.status);
    replace(body,
      order.status === 'CANCELLED' ? h('p', { class: 'warn' }, 'This order was cancelled.') :
        h('ol', { class: 'steps', 'aria-label': 'Progress' }, STEPS.map((s, i) => h('li', {
          class: i < reached ? 'done' : i === reached ? 'current' : '',
          'aria-current': i === reached ? 'step' : null,
        }, statusLabel(s)))),
      partner ? h('p', {}, `Delivered by ${partner.name}`, partner.phone ? ` (${partner.phone})` : '') : null,
      h('table', { class: 'lines', 'aria-label': 'Items' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col' }, 'Quantity'), h('th', { scope: 'col' }, 'Total'))),
        h('tbody', {}, order.lines.map((l) => h('tr', {},
          h('td', { 'data-label': 'Product' }, l.title),
          h('td', { 'data-label': 'Quantity' }, String(l.quantity)),
          h('td', { 'data-label': 'Total' }, formatMoney(l.line_total)))))),
      h('p', { class: 'total' }, 'Total: ', h('strong', {}, formatMoney(order.total))),
      h('h2', {}, 'Shipping to'),
      h('address', {}, [order.shipping.name, order.shipping.line1, order.shipping.line2,
        `${order.shipping.postal_code} ${order.shipping.city}`, order.shipping.country].filter(Boolean).map((l) => [l, h('br')])),
      h('p', { class: 'muted' }, `Placed ${formatDate(order.placed_at)} · updated ${formatDate(order.updated_at)}`),
      CANCELLABLE.has(order.status) ? h('button', { type: 'button', class: 'secondary danger', onclick: () => cancel(order) }, 'Cancel order') : null);
  };

  async function cancel(order) {
    if (!window.confirm('Cancel this order?')) return;
    try {
      draw(await api.cancelOrder(order.id));
    } catch (error) {
      handle(error, { box });
    }
  }

  stop = poll(async () => {
    try {
      const order = await api.order(id);
      let delivery = null;
      if (!order.partner && ['PARTNER_ASSIGNED', 'PICKED_UP', 'OUT_FOR_DELIVERY'].includes(order.status)) {
        delivery = await api.delivery(id).catch(() => null);
      }
      draw(order, delivery);
      if (FINAL.has(order.status)) stop();
    } catch (error) {
      handle(error, { box });
      if (error.status === 404) stop();
    }
  }, ORDER_POLL_MS);
  return { title: 'Order', node, cleanup: () => stop() };
}
