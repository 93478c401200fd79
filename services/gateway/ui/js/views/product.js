// One product: details, attributes, quantity and "Add to cart".

import * as api from '../api.js';
import { formatMoney, h } from '../dom.js';
import { addButton } from './cart.js';
import { handle, page, pageMessage } from './common.js';

/** Few enough left to say how many. */
const LOW_STOCK = 5;

/**
 * The stock the order service reported (`availability` of a product or a search hit): "In
 * stock", "Only N left" or "Out of stock"; nothing while it is unknown (`null`).
 */
export function stockNote(availability) {
  if (!availability) return null;
  const { available } = availability;
  if (available <= 0) return h('p', { class: 'stock warn', dataset: { stock: 'out' } }, 'Out of stock');
  if (available <= LOW_STOCK) return h('p', { class: 'stock warn', dataset: { stock: 'low' } }, `Only ${available} left`);
  return h('p', { class: 'stock', dataset: { stock: 'in' } }, 'In stock');
}

export async function view({ id }) {
  let product;
  try {
    ({ data: product } = await api.product(id));
  } catch (error) {
    const node = page(error.status === 404 ? 'Product not found' : 'Product');
    handle(error, { box: pageMessage(node) });
    node.append(h('p', {}, h('a', { href: '/search' }, 'Back to the products')));
    return { title: 'Product', node };
  }
  const node = page(product.title);
  const box = pageMessage(node);
  const qtyId = 'product-qty';
  const qty = h('input', { id: qtyId, type: 'number', min: 1, max: 99, value: '1', inputmode: 'numeric', class: 'qty' });
  const attributes = Object.entries(product.attributes || {});
  node.append(
    h('div', { class: 'product' },
      h('div', { class: 'thumb large', 'aria-hidden': 'true' }, (product.brand || '?')[0]),
      h('div', { class: 'product-info' },
        h('p', { class: 'muted' }, product.brand, ' · ', h('a', { href: `/search?category=${encodeURIComponent(product.category)}` }, product.category)),
        h('p', { class: 'price large', id: 'product-price' }, formatMoney(product.price)),
        stockNote(product.availability),
        h('p', {}, product.description),
        attributes.length ? h('dl', { class: 'attributes' }, attributes.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])) : null,
        h('div', { class: 'buy' },
          h('label', { for: qtyId }, 'Quantity'), qty,
          addButton(product.id, product.title, box, qty)),
        h('p', { class: 'muted small' }, `SKU ${product.sku}`))));
  return { title: product.title, node };
}
