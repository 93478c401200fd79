// The cart: add buttons used across the shop, and the cart page (change quantity, remove,
// empty, go to checkout). The header's item count follows every change.

import * as api from '../api.js';
import { busy, formatMoney, h, replace, showMessage } from '../dom.js';
import { navigate } from '../router.js';
import { emptyState, handle, page, pageMessage } from './common.js';

/** Tells the header how many items the cart holds. */
export function cartChanged(cart) {
  document.dispatchEvent(new CustomEvent('storefront:cart', { detail: cart?.item_count ?? 0 }));
}

/** An "Add to cart" button; `quantityInput` (optional) gives the quantity. */
export function addButton(productId, title, box, quantityInput) {
  const button = h('button', { type: 'button', class: 'primary add-to-cart', dataset: { productId } }, 'Add to cart');
  button.setAttribute('aria-label', `Add ${title} to cart`);
  button.addEventListener('click', async () => {
    if (!api.currentSession()) {
      navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
      return;
    }
    const quantity = quantityInput ? Number(quantityInput.value) : 1;
    if (!Number.isInteger(quantity) || quantity < 1 || quantity > 99) {
      showMessage(box, 'Choose a quantity from 1 to 99.', 'error');
      quantityInput?.focus();
      return;
    }
    button.disabled = true;
    try {
      const cart = await api.addToCart(productId, quantity);
      cartChanged(cart);
      showMessage(box, `Added ${title} to your cart.`, 'success');
    } catch (error) {
      handle(error, { box });
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

export async function view() {
  const node = page('Your cart');
  const box = pageMessage(node);
  const body = h('div', {});
  node.append(body);
  const draw = (cart) => {
    cartChanged(cart);
    if (!cart.items.length) {
      replace(body, emptyState('Your cart is empty.', h('a', { href: '/search', class: 'button' }, 'Browse products')));
      return;
    }
    replace(body,
      h('table', { class: 'lines', 'aria-label': 'Cart items' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col' }, 'Price'),
          h('th', { scope: 'col' }, 'Quantity'), h('th', { scope: 'col' }, 'Total'),
          h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
        h('tbody', {}, cart.items.map((line) => row(line, box, draw)))),
      h('p', { class: 'total' }, `Total (${cart.item_count} item${cart.item_count === 1 ? '' : 's'}): `,
        h('strong', { id: 'cart-total' }, formatMoney(cart.total))),
      h('div', { class: 'actions' },
        h('button', {
          type: 'button', class: 'secondary',
          onclick: async () => {
            try {
              await api.clearCart();
              draw({ items: [], item_count: 0 });
            } catch (error) {
              handle(error, { box });
            }
          },
        }, 'Empty cart'),
        h('a', { href: '/checkout', class: 'button primary' }, 'Checkout')));
  };
  try {
    draw(await api.cart());
  } catch (error) {
    handle(error, { box });
  }
  return { title: 'Cart', node };
}

function row(line, box, draw) {
  const id = `qty-${line.product_id}`;
  const qty = h('input', { id, type: 'number', min: 1, max: 99, value: String(line.quantity), inputmode: 'numeric', class: 'qty' });
  const form = h('form', { class: 'qty-form' },
    h('label', { for: id, class: 'visually-hidden' }, `Quantity of ${line.title}`), qty,
    h('button', { type: 'submit' }, 'Update'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(form, async () => {
      const n = Number(qty.value);
      if (!Number.isInteger(n) || n < 1 || n > 99) {
        showMessage(box, 'Choose a quantity from 1 to 99, or remove the item.', 'error');
        qty.focus();
        return;
      }
      try {
        draw(await api.setQuantity(line.product_id, n));
      } catch (error) {
        handle(error, { box });
      }
    });
  });
  return h('tr', { dataset: { productId: line.product_id } },
    h('td', { 'data-label': 'Product' }, h('a', { href: `/products/${encodeURIComponent(line.product_id)}` }, line.title)),
    h('td', { 'data-label': 'Price' }, formatMoney(line.unit_price)),
    h('td', { 'data-label': 'Quantity' }, form),
    h('td', { 'data-label': 'Total' }, formatMoney(line.line_total)),
    h('td', {}, h('button', {
      type: 'button', class: 'link danger', 'aria-label': `Remove ${line.title}`,
      onclick: async () => {
        try {
          await api.removeFromCart(line.product_id);
          draw(await api.cart());
        } catch (error) {
          handle(error, { box });
        }
      },
    }, 'Remove')));
}
