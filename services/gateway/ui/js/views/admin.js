// Admin: products (find, create, edit price and details with If-Match, set stock), delivery
// partners (list, create, on/off shift) and the mailbox of sent e-mails.

import * as api from '../api.js';
import { busy, field, formatDate, formatMoney, h, messageBox, replace, showMessage, values } from '../dom.js';
import { navigate } from '../router.js';
import { emptyState, fromMinor, handle, page, pageMessage, toMinor } from './common.js';

function tabs(current) {
  const link = (href, text) => h('a', { href, 'aria-current': current === href ? 'page' : null }, text);
  return h('nav', { class: 'tabs', 'aria-label': 'Admin sections' },
    link('/admin', 'Products'), link('/admin/partners', 'Partners'), link('/admin/mailbox', 'Mailbox'));
}

// --- Products ---

export async function products(_params, query) {
  const node = page('Products');
  node.querySelector('h1').after(tabs('/admin'));
  const box = pageMessage(node);
  const q = query.get('q') || '';
  const find = h('form', { class: 'inline-form', role: 'search' },
    h('label', { for: 'admin-q' }, 'Find'), h('input', { id: 'admin-q', name: 'q', type: 'search', value: q }),
    h('button', { type: 'submit' }, 'Find'),
    h('a', { href: '/admin/products/new', class: 'button primary' }, 'New product'));
  find.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = find.q.value.trim();
    navigate(v ? `/admin?q=${encodeURIComponent(v)}` : '/admin');
  });
  node.append(find);
  try {
    const data = await api.search({ q: q || undefined, page_size: 25, sort: q ? undefined : 'newest' });
    node.append(data.hits.length
      ? h('table', { class: 'lines', 'aria-label': 'Products' },
        h('thead', {}, h('tr', {}, ['Title', 'SKU', 'Brand', 'Price', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, data.hits.map((p) => h('tr', {},
          h('td', { 'data-label': 'Title' }, p.title),
          h('td', { 'data-label': 'SKU' }, p.sku),
          h('td', { 'data-label': 'Brand' }, p.brand),
          h('td', { 'data-label': 'Price' }, formatMoney(p.price)),
          h('td', {}, h('a', { href: `/admin/products/${encodeURIComponent(p.id)}`, 'aria-label': `Edit ${p.title}` }, 'Edit'))))))
      : emptyState('No products found.'));
  } catch (error) {
    handle(error, { box });
  }
  return { title: 'Products', node };
}

function productForm(product) {
  const attrs = Object.entries(product?.attributes || {}).map(([k, v]) => `${k}=${v}`).join('\n');
  return h('form', { class: 'form', novalidate: true, 'aria-label': 'Product' },
    h('div', { class: 'row' },
      field({ label: 'SKU', name: 'sku', required: true, value: product?.sku || '' }),
      field({ label: 'Title', name: 'title', required: true, value: product?.title || '' })),
    h('div', { class: 'row' },
      field({ label: 'Brand', name: 'brand', required: true, value: product?.brand || '' }),
      field({ label: 'Category', name: 'category', required: true, value: product?.category || '', hint: 'A path, e.g. electronics/audio/headphones' })),
    h('div', { class: 'row' },
      field({ label: 'Price', name: 'price.minor', inputmode: 'decimal', required: true, value: product ? fromMinor(product.price.minor) : '', hint: 'e.g. 19.99' }),
      field({ label: 'Currency', name: 'price.currency', required: true, value: product?.price.currency || 'EUR', maxlength: 3 }),
      field({ label: 'Stock hint (optional)', name: 'stock_hint', type: 'number', min: 0, value: product?.stock_hint ?? '' })),
    descriptionField(product?.description || ''),
    attributesField(attrs));
}

function descriptionField(text) {
  const f = field({ label: 'Description', name: 'description', type: 'textarea', rows: 4 });
  f.querySelector('textarea').value = text;
  return f;
}

function attributesField(text) {
  const f = field({ label: 'Attributes', name: 'attributes', type: 'textarea', rows: 3, hint: 'One key=value per line, e.g. colour=black' });
  f.querySelector('textarea').value = text;
  return f;
}

/** The form's values as a ProductInput, or field errors found here. */
function productInput(form) {
  const v = values(form);
  const errors = [];
  const minor = toMinor(v['price.minor']);
  if (Number.isNaN(minor)) errors.push({ field: 'price.minor', message: 'must be an amount like 19.99' });
  const attributes = {};
  for (const line of v.attributes.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const i = line.indexOf('=');
    if (i <= 0) errors.push({ field: 'attributes', message: `“${line}” is not key=value` });
    else attributes[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  let stock_hint = null;
  if (v.stock_hint !== '') {
    stock_hint = Number(v.stock_hint);
    if (!Number.isInteger(stock_hint) || stock_hint < 0) errors.push({ field: 'stock_hint', message: 'must be a whole number' });
  }
  return {
    errors,
    input: {
      sku: v.sku, title: v.title, description: v.description, brand: v.brand, category: v.category,
      price: { minor, currency: v['price.currency'].toUpperCase() }, attributes, stock_hint,
    },
  };
}

function localError(errors) {
  return new api.ApiError({ status: 422, detail: 'Please correct the marked fields.', errors });
}

export function newProduct() {
  const node = page('New product');
  node.querySelector('h1').after(tabs('/admin'));
  const box = messageBox();
  const form = productForm(null);
  form.append(box, h('div', { class: 'actions' }, h('a', { href: '/admin', class: 'button secondary' }, 'Cancel'), h('button', { type: 'submit', class: 'primary' }, 'Create product')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(form, async () => {
      const { input, errors } = productInput(form);
      if (errors.length) return handle(localError(errors), { form, box });
      try {
        const created = await api.createProduct(input);
        navigate(`/admin/products/${encodeURIComponent(created.id)}?created=1`, { replace: true });
      } catch (error) {
        handle(error, { form, box });
      }
    });
  });
  node.append(form);
  return { title: 'New product', node };
}

export async function editProduct({ id }, query) {
  const node = page('Edit product');
  node.querySelector('h1').after(tabs('/admin'));
  const top = pageMessage(node);
  let product;
  try {
    ({ data: product } = await api.product(id));
  } catch (error) {
    handle(error, { box: top });
    return { title: 'Edit product', node };
  }
  if (query.get('created')) showMessage(top, 'Product created. Set its stock below.', 'success');
  node.querySelector('h1').textContent = `Edit ${product.title}`;
  const box = messageBox();
  const form = productForm(product);
  const version = h('p', { class: 'muted small' }, `Version ${product.version}`);
  form.append(version, box, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save product')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(form, async () => {
      const { input, errors } = productInput(form);
      if (errors.length) return handle(localError(errors), { form, box });
      try {
        product = await api.updateProduct(product.id, input, product.version);
        version.textContent = `Version ${product.version}`;
        showMessage(box, 'Saved.', 'success');
      } catch (error) {
        // 412/409 is a version conflict, unless it names a field (a SKU another product has).
        if ((error.status === 412 || error.status === 409) && !error.errors?.length) {
          error.detail = `${error.detail || 'The product changed meanwhile.'} Reload the page to see the current version.`;
        }
        handle(error, { form, box });
      }
    });
  });
  node.append(form, await stockForm(product.id));
  return { title: 'Edit product', node };
}

async function stockForm(productId) {
  const box = messageBox();
  let current = '';
  try {
    current = String((await api.stock(productId)).available);
  } catch (error) {
    if (error.status !== 404) handle(error, { box });
  }
  const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'Stock' },
    h('h2', {}, 'Stock'),
    field({ label: 'Available', name: 'available', type: 'number', min: 0, required: true, value: current, hint: current ? null : 'No stock recorded yet.' }),
    box,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save stock')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(form, async () => {
      const n = Number(values(form).available);
      if (!Number.isInteger(n) || n < 0) return handle(localError([{ field: 'available', message: 'must be a whole number, 0 or more' }]), { form, box });
      try {
        const s = await api.setStock(productId, n);
        showMessage(box, `Stock saved: ${s?.available ?? n} available.`, 'success');
      } catch (error) {
        handle(error, { form, box });
      }
    });
  });
  return form;
}

// --- Partners ---

export async function partners() {
  const node = page('Delivery partners');
  node.querySelector('h1').after(tabs('/admin/partners'));
  const box = pageMessage(node);
  const list = h('div', {});
  node.append(list);
  const draw = async () => {
    try {
      const { items } = await api.partners();
      replace(list, items.length ? h('table', { class: 'lines', 'aria-label': 'Partners' },
        h('thead', {}, h('tr', {}, ['Name', 'E-mail', 'Area', 'Load', 'Shift'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, items.map((p) => h('tr', { dataset: { partnerId: p.id } },
          h('td', { 'data-label': 'Name' }, p.name),
          h('td', { 'data-label': 'E-mail' }, p.email),
          h('td', { 'data-label': 'Area' }, (p.service_area?.postal_prefixes || []).join(', ') || (p.service_area?.circle ? `${p.service_area.circle.radius_km} km circle` : '—')),
          h('td', { 'data-label': 'Load' }, `${p.load} / ${p.capacity?.max_concurrent}`),
          h('td', { 'data-label': 'Shift' }, h('button', {
            type: 'button', 'aria-pressed': String(p.on_shift), 'aria-label': `${p.name} on shift`,
            onclick: async () => {
              try {
                await api.patchPartner(p.id, { on_shift: !p.on_shift });
                await draw();
              } catch (error) {
                handle(error, { box });
              }
            },
          }, p.on_shift ? 'On shift' : 'Off shift'))))))
        : emptyState('No partners yet.'));
    } catch (error) {
      handle(error, { box });
    }
  };
  await draw();
  node.append(partnerForm(draw));
  return { title: 'Partners', node };
}

function partnerForm(onCreated) {
  const box = messageBox();
  const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'New partner' },
    h('h2', {}, 'New partner'),
    field({ label: 'Account id', name: 'account_id', required: true, hint: 'The partner’s account (it needs the partner role).' }),
    h('div', { class: 'row' },
      field({ label: 'Name', name: 'name', required: true }),
      field({ label: 'E-mail', name: 'email', type: 'email', required: true }),
      field({ label: 'Phone', name: 'phone', type: 'tel' })),
    field({ label: 'Postal-code prefixes', name: 'service_area.postal_prefixes', hint: 'Comma-separated, e.g. 10, 12, SW1' }),
    h('div', { class: 'row' },
      field({ label: 'Deliveries at once', name: 'capacity.max_concurrent', type: 'number', min: 1, value: '5', required: true }),
      field({ label: 'Largest order (items)', name: 'capacity.max_items', type: 'number', min: 1, value: '50', required: true })),
    field({ label: 'On shift', name: 'on_shift', type: 'checkbox', checked: true }),
    box,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create partner')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(form, async () => {
      const v = values(form);
      try {
        await api.createPartner({
          account_id: v.account_id, name: v.name, email: v.email, phone: v.phone || undefined, on_shift: v.on_shift,
          service_area: { postal_prefixes: v['service_area.postal_prefixes'].split(',').map((s) => s.trim()).filter(Boolean) },
          capacity: { max_concurrent: Number(v['capacity.max_concurrent']), max_items: Number(v['capacity.max_items']) },
        });
        form.reset();
        showMessage(box, 'Partner created.', 'success');
        await onCreated();
      } catch (error) {
        handle(error, { form, box });
      }
    });
  });
  return form;
}

// --- Mailbox ---

export async function mailbox() {
  const node = page('Mailbox');
  node.querySelector('h1').after(tabs('/admin/mailbox'));
  const box = pageMessage(node);
  const refresh = h('button', { type: 'button', onclick: () => navigate('/admin/mailbox', { replace: true }) }, 'Refresh');
  node.append(h('div', { class: 'toolbar' }, refresh));
  try {
    const data = await api.notifications(100);
    if (data.mailbox) {
      node.append(h('h2', {}, `E-mails (${data.mailbox.length})`),
        data.mailbox.length ? h('ul', { class: 'mails', 'aria-label': 'E-mails' }, data.mailbox.map((m) => h('li', { class: 'mail card' },
          h('h3', { class: 'card-title' }, m.subject),
          h('p', { class: 'muted' }, `To ${m.to} · ${m.date}`),
          h('details', {}, h('summary', {}, 'Show message'), h('pre', {}, textPart(m.raw))))))
          : emptyState('No e-mails yet.'));
    } else {
      node.append(h('p', { class: 'muted' }, 'Mail goes to a mail server here; only the sent-log is shown.'));
    }
    node.append(h('h2', {}, 'Sent-log'),
      data.items.length ? h('table', { class: 'lines', 'aria-label': 'Sent-log' },
        h('thead', {}, h('tr', {}, ['When', 'To', 'Subject', 'Template', 'Status'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, data.items.map((n) => h('tr', {},
          h('td', { 'data-label': 'When' }, formatDate(n.at)),
          h('td', { 'data-label': 'To' }, n.recipient),
          h('td', { 'data-label': 'Subject' }, n.subject),
          h('td', { 'data-label': 'Template' }, n.template),
          h('td', { 'data-label': 'Status' }, `${n.status}${n.error ? `: ${n.error}` : ''}`)))))
        : emptyState('Nothing sent yet.'));
  } catch (error) {
    handle(error, { box });
  }
  return { title: 'Mailbox', node };
}

/** The text/plain part of a MIME message (or the whole message), decoded when quoted-printable. */
function textPart(raw) {
  const m = raw.match(/Content-Type: text\/plain[^\r\n]*\r?\n((?:[^\r\n]+\r?\n)*)\r?\n([\s\S]*?)(?:\r?\n--[^\r\n]+|$)/i);
  if (!m) return raw;
  let body = m[2];
  if (/quoted-printable/i.test(m[1])) {
    body = body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/gi, (_, x) => String.fromCharCode(parseInt(x, 16)));
    try {
      body = decodeURIComponent(escape(body));
    } catch {
      // Not UTF-8: keep the bytes as they are.
    }
  } else if (/base64/i.test(m[1])) {
    try {
      body = new TextDecoder().decode(Uint8Array.from(atob(body.replace(/\s/g, '')), (c) => c.charCodeAt(0)));
    } catch {
      // Leave it encoded.
    }
  }
  return body;
}
