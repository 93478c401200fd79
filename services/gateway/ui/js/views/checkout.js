// Checkout: contact and shipping address, then the order is placed with an Idempotency-Key.
// A retry of the same form (after a network error, 429 or 5xx) reuses the key, so the order
// is placed once; a changed form gets a new key.

import * as api from '../api.js';
import { busy, field, formatMoney, h, messageBox, values } from '../dom.js';
import { navigate } from '../router.js';
import { cartChanged } from './cart.js';
import { emptyState, handle, page, pageMessage, setFlash } from './common.js';

const COUNTRIES = [
  ['DE', 'Germany'], ['AT', 'Austria'], ['BE', 'Belgium'], ['DK', 'Denmark'], ['ES', 'Spain'],
  ['FI', 'Finland'], ['FR', 'France'], ['GB', 'United Kingdom'], ['IE', 'Ireland'], ['IT', 'Italy'],
  ['LU', 'Luxembourg'], ['NL', 'Netherlands'], ['PL', 'Poland'], ['PT', 'Portugal'], ['SE', 'Sweden'],
  ['CH', 'Switzerland'],
];

export async function view() {
  const node = page('Checkout');
  const top = pageMessage(node);
  let cart;
  try {
    cart = await api.cart();
  } catch (error) {
    handle(error, { box: top });
    return { title: 'Checkout', node };
  }
  if (!cart.items.length) {
    node.append(emptyState('Your cart is empty.', h('a', { href: '/search', class: 'button' }, 'Browse products')));
    return { title: 'Checkout', node };
  }
  const user = api.currentSession()?.user || {};
  const box = messageBox();
  const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'Checkout' },
    h('fieldset', {}, h('legend', {}, 'Contact'),
      field({ label: 'Name', name: 'customer.name', autocomplete: 'name', required: true, value: user.name || '' }),
      field({ label: 'E-mail', name: 'customer.email', type: 'email', autocomplete: 'email', required: true, value: user.email || '' })),
    h('fieldset', {}, h('legend', {}, 'Shipping address'),
      field({ label: 'Recipient', name: 'shipping.name', autocomplete: 'shipping name', required: true, value: user.name || '' }),
      field({ label: 'Phone (optional)', name: 'shipping.phone', type: 'tel', autocomplete: 'shipping tel' }),
      field({ label: 'Address', name: 'shipping.line1', autocomplete: 'shipping address-line1', required: true }),
      field({ label: 'Address line 2 (optional)', name: 'shipping.line2', autocomplete: 'shipping address-line2' }),
      h('div', { class: 'row' },
        field({ label: 'Postal code', name: 'shipping.postal_code', autocomplete: 'shipping postal-code', required: true }),
        field({ label: 'City', name: 'shipping.city', autocomplete: 'shipping address-level2', required: true })),
      field({ label: 'Country', name: 'shipping.country', type: 'select', autocomplete: 'shipping country', options: COUNTRIES, value: 'DE' })),
    h('p', { class: 'total' }, `Total (${cart.item_count} item${cart.item_count === 1 ? '' : 's'}): `, h('strong', {}, formatMoney(cart.total))),
    box,
    h('div', { class: 'actions' },
      h('a', { href: '/cart', class: 'button secondary' }, 'Back to cart'),
      h('button', { type: 'submit', class: 'primary' }, 'Place order')));

  let attempt = null; // {key, body}: reused while the same body is retried
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, async () => {
      const v = values(form);
      const body = {
        customer: { name: v['customer.name'], email: v['customer.email'] },
        shipping: {
          name: v['shipping.name'],
          phone: v['shipping.phone'] || undefined,
          line1: v['shipping.line1'],
          line2: v['shipping.line2'] || undefined,
          city: v['shipping.city'],
          postal_code: v['shipping.postal_code'],
          country: v['shipping.country'],
        },
      };
      const text = JSON.stringify(body);
      if (!attempt || attempt.body !== text) attempt = { key: api.newIdempotencyKey(), body: text };
      try {
        const order = await api.placeOrder(body, attempt.key);
        attempt = null;
        cartChanged({ item_count: 0 });
        setFlash('Thank you! Your order is placed.', 'success');
        navigate(`/orders/${encodeURIComponent(order.id)}`, { replace: true });
      } catch (error) {
        // Only a lost answer, 429 or 5xx is retried with the same key; any other answer settled
        // this attempt (e.g. 409 out of stock: after changing the cart the next try is new).
        const retryable = error.status === 0 || error.status === 429 || error.status >= 500;
        if (!retryable) attempt = null;
        if (error.status === 409 && /out-of-stock/.test(error.type)) {
          const ids = new Set(error.errors.filter((e) => e.field === 'product_id').map((e) => e.message));
          const titles = cart.items.filter((l) => ids.has(l.product_id)).map((l) => l.title);
          error.detail = `Out of stock: ${titles.length ? titles.join(', ') : error.detail}. Lower the quantity or remove it in your cart.`;
          error.errors = [];
        }
        handle(error, { form, box });
      }
    });
  });
  node.append(
    h('div', { class: 'checkout' }, form,
      h('aside', { class: 'summary', 'aria-label': 'Order summary' }, h('h2', {}, 'Summary'),
        h('ul', {}, cart.items.map((l) => h('li', {}, `${l.quantity} × ${l.title}`, h('span', { class: 'muted' }, ` ${formatMoney(l.line_total)}`)))))));
  return { title: 'Checkout', node };
}
