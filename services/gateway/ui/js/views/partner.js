// The delivery partner's view: their deliveries with the next step as a button, and the
// on-shift switch. The list refreshes while shown.

import * as api from '../api.js';
import { formatDate, h, replace, showMessage, statusBadge } from '../dom.js';
import { emptyState, handle, page, pageMessage, poll } from './common.js';

const POLL_MS = 5000;
const NEXT = {
  PARTNER_ASSIGNED: ['picked-up', 'Mark picked up'],
  PICKED_UP: ['out-for-delivery', 'Mark out for delivery'],
  OUT_FOR_DELIVERY: ['delivered', 'Mark delivered'],
};

export function view() {
  const node = page('Your deliveries');
  const box = pageMessage(node);
  const shift = h('input', { type: 'checkbox', id: 'on-shift', name: 'on_shift' });
  shift.addEventListener('change', async () => {
    shift.disabled = true;
    try {
      const partner = await api.setAvailability(shift.checked);
      shift.checked = partner.on_shift;
      showMessage(box, partner.on_shift ? 'You are on shift: new deliveries can come your way.' : 'You are off shift.', 'success');
    } catch (error) {
      shift.checked = !shift.checked;
      handle(error, { box });
    } finally {
      shift.disabled = false;
    }
  });
  // Show the current on-shift state (the partner record is the delivery service's); the
  // switch stays disabled until it is known, so a click never flips a stale state.
  shift.disabled = true;
  api.myPartner()
    .then((partner) => { shift.checked = Boolean(partner.on_shift); })
    .catch(() => {})
    .finally(() => { shift.disabled = false; });
  const body = h('div', { 'aria-live': 'polite' });
  node.append(h('div', { class: 'field-check toolbar' }, shift, h('label', { for: 'on-shift' }, 'On shift')), body);

  let drawn = null;
  const draw = (items) => {
    // Redraw only on change, so polling never steals the keyboard focus.
    const signature = JSON.stringify(items);
    if (signature === drawn) return;
    drawn = signature;
    if (!items.length) {
      replace(body, emptyState('No deliveries assigned to you yet.'));
      return;
    }
    replace(body, h('ul', { class: 'deliveries', 'aria-label': 'Deliveries' }, items.map((d) => {
      const next = NEXT[d.status];
      const a = d.address || {};
      return h('li', { class: 'delivery card', dataset: { orderId: d.order_id, status: d.status } },
        h('h2', { class: 'card-title' }, `Order ${d.order_id.slice(0, 8)}`),
        statusBadge(d.status),
        h('address', {}, [a.name, a.line1, a.line2, [a.postal_code, a.city].filter(Boolean).join(' '), a.country, a.phone]
          .filter(Boolean).map((l) => [l, h('br')])),
        h('p', { class: 'muted' }, `${d.item_count} item${d.item_count === 1 ? '' : 's'} · assigned ${formatDate(d.assigned_at)}`),
        next ? h('button', {
          type: 'button', class: 'primary', dataset: { step: next[0] },
          'aria-label': `${next[1]}: order ${d.order_id.slice(0, 8)}`,
          onclick: async (e) => {
            e.currentTarget.disabled = true;
            try {
              await api.advanceDelivery(d.order_id, next[0]);
              showMessage(box, `Order ${d.order_id.slice(0, 8)}: ${next[1].replace('Mark ', '')}.`, 'success');
              await refresh();
              // Keep the keyboard on this delivery: its next step, or the card's heading.
              const card = body.querySelector(`.delivery[data-order-id="${CSS.escape(d.order_id)}"]`);
              const target = card?.querySelector('button') || card?.querySelector('h2');
              if (target && !target.matches('button')) target.tabIndex = -1;
              target?.focus();
            } catch (error) {
              handle(error, { box });
              await refresh();
            }
          },
        }, next[1]) : null);
    })));
  };
  async function refresh() {
    try {
      const { items } = await api.partnerDeliveries();
      draw(items || []);
    } catch (error) {
      handle(error, { box });
    }
  }
  const stop = poll(refresh, POLL_MS);
  return { title: 'Deliveries', node, cleanup: stop };
}
