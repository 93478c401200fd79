// Search: the header's search box with suggestions (an ARIA combobox), and the results page
// with facets (brand, category, attributes), price filters, sorting and paging. The whole
// search lives in the URL, so Back and links work.

import * as api from '../api.js';
import { formatMoney, h, replace } from '../dom.js';
import { navigate } from '../router.js';
import { emptyState, handle, page, pageMessage, toMinor, fromMinor } from './common.js';
import { addButton } from './cart.js';
import { stockNote } from './product.js';

const PAGE_SIZE = 12;

/** The search box with autocomplete. Enter searches; arrows pick a suggestion. */
export function searchBox() {
  const listId = 'search-suggestions';
  const input = h('input', {
    id: 'search-q', name: 'q', type: 'search', autocomplete: 'off', placeholder: 'Search products',
    role: 'combobox', 'aria-autocomplete': 'list', 'aria-expanded': 'false', 'aria-controls': listId,
  });
  const list = h('ul', { id: listId, role: 'listbox', class: 'suggestions', hidden: true, 'aria-label': 'Suggestions' });
  const form = h('form', { class: 'search-box', role: 'search' },
    h('label', { for: 'search-q', class: 'visually-hidden' }, 'Search products'),
    input, list,
    h('button', { type: 'submit' }, 'Search'));
  let items = [];
  let active = -1;
  let timer = null;
  let seq = 0;

  const close = () => {
    list.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
    active = -1;
  };
  const highlight = (i) => {
    active = i;
    list.querySelectorAll('[role=option]').forEach((li, j) => li.setAttribute('aria-selected', String(j === i)));
    if (i >= 0) input.setAttribute('aria-activedescendant', `suggestion-${i}`);
    else input.removeAttribute('aria-activedescendant');
  };
  const choose = (i) => {
    const s = items[i];
    close();
    if (s) {
      input.value = s.text;
      navigate(`/products/${encodeURIComponent(s.product_id)}`);
    }
  };
  const load = async () => {
    const q = input.value.trim();
    const mine = ++seq;
    if (!q) return close();
    try {
      const { suggestions } = await api.suggest(q);
      if (mine !== seq) return;
      items = suggestions || [];
      replace(list, items.map((s, i) => h('li', {
        id: `suggestion-${i}`, role: 'option', 'aria-selected': 'false',
        onmousedown: (e) => { e.preventDefault(); choose(i); },
      }, s.text)));
      list.hidden = items.length === 0;
      input.setAttribute('aria-expanded', String(items.length > 0));
      active = -1;
    } catch {
      close();
    }
  };
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(load, 150);
  });
  input.addEventListener('keydown', (e) => {
    if (list.hidden) return;
    if (e.key === 'ArrowDown') {
      e.preventDefault();
      highlight((active + 1) % items.length);
    } else if (e.key === 'ArrowUp') {
      e.preventDefault();
      highlight(active <= 0 ? items.length - 1 : active - 1);
    } else if (e.key === 'Escape') {
      close();
    } else if (e.key === 'Enter' && active >= 0) {
      e.preventDefault();
      choose(active);
    }
  });
  input.addEventListener('blur', () => setTimeout(close, 100));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearTimeout(timer);
    seq++;
    close();
    const q = input.value.trim();
    navigate(q ? `/search?q=${encodeURIComponent(q)}` : '/search');
  });
  // Keep the box in step with the URL.
  document.addEventListener('storefront:navigated', () => {
    const q = new URLSearchParams(location.search).get('q');
    if (location.pathname === '/search' && document.activeElement !== input) input.value = q || '';
  });
  return form;
}

const SORTS = [
  ['relevance', 'Relevance'],
  ['price_asc', 'Price: low to high'],
  ['price_desc', 'Price: high to low'],
  ['newest', 'Newest'],
];

function withParam(query, changes) {
  const q = new URLSearchParams(query);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '') q.delete(k);
    else q.set(k, v);
  }
  if (!('page' in changes)) q.delete('page');
  const s = q.toString();
  return `/search${s ? `?${s}` : ''}`;
}

function listParam(query, name) {
  return (query.get(name) || '').split(',').filter(Boolean);
}

function toggled(list, value) {
  return list.includes(value) ? list.filter((v) => v !== value) : [...list, value];
}

export async function results(_params, query) {
  const params = {
    q: query.get('q') || undefined,
    category: query.get('category') || undefined,
    brand: query.get('brand') || undefined,
    attr: query.get('attr') || undefined,
    price_min: query.get('price_min') || undefined,
    price_max: query.get('price_max') || undefined,
    in_stock: query.get('in_stock') === 'true' ? 'true' : undefined,
    sort: query.get('sort') || undefined,
    page: query.get('page') || undefined,
    page_size: PAGE_SIZE,
  };
  const title = params.q ? `Results for “${params.q}”` : 'All products';
  const node = page(title);
  const box = pageMessage(node);
  let data;
  try {
    data = await api.search(params);
  } catch (error) {
    handle(error, { box });
    return { title, node };
  }
  const layout = h('div', { class: 'search-layout' },
    facetsPanel(query, data.facets || {}),
    h('div', { class: 'results' },
      h('div', { class: 'results-bar' },
        h('p', { id: 'result-count', role: 'status' }, `${data.total} product${data.total === 1 ? '' : 's'}`),
        sortSelect(query)),
      data.hits.length
        ? h('ul', { class: 'cards', 'aria-label': 'Products' }, data.hits.map((hit) => card(hit, box)))
        : emptyState('No products match. Try fewer filters or another word.', h('a', { href: '/search' }, 'Clear the search')),
      pager(query, data)));
  node.append(layout);
  return { title, node };
}

function sortSelect(query) {
  const select = h('select', { id: 'sort', name: 'sort' },
    SORTS.map(([v, t]) => h('option', { value: v, selected: (query.get('sort') || 'relevance') === v }, t)));
  select.addEventListener('change', () => navigate(withParam(query, { sort: select.value === 'relevance' ? null : select.value })));
  return h('div', { class: 'inline-field' }, h('label', { for: 'sort' }, 'Sort by'), select);
}

function card(hit, box) {
  const href = `/products/${encodeURIComponent(hit.id)}`;
  return h('li', { class: 'card', dataset: { productId: hit.id } },
    h('div', { class: 'thumb', 'aria-hidden': 'true' }, (hit.brand || '?')[0]),
    h('h2', { class: 'card-title' }, h('a', { href }, hit.title)),
    h('p', { class: 'muted' }, hit.brand),
    h('p', { class: 'price' }, formatMoney(hit.price)),
    stockNote(hit.availability),
    addButton(hit.id, hit.title, box));
}

function facetsPanel(query, facets) {
  const brands = listParam(query, 'brand');
  const attrs = listParam(query, 'attr');
  const category = query.get('category');
  const groups = [];

  if (facets.category?.length) {
    const depth = category ? category.split('/').length : 0;
    const shown = facets.category.filter((f) => {
      const d = f.value.split('/').length;
      return d === depth + 1 || f.value === category;
    });
    groups.push(h('fieldset', { class: 'facet' }, h('legend', {}, 'Category'),
      category ? h('a', { class: 'facet-clear', href: withParam(query, { category: parentOf(category) }) }, '‹ Up a level') : null,
      h('ul', {}, shown.map((f) => h('li', {},
        f.value === category
          ? h('strong', { 'aria-current': 'true' }, `${lastPart(f.value)} (${f.count})`)
          : h('a', { href: withParam(query, { category: f.value }) }, `${lastPart(f.value)} (${f.count})`))))));
  }
  if (facets.brand?.length) {
    groups.push(checkGroup('Brand', 'brand', facets.brand.map((f) => [f.value, f.value, f.count]), brands, (v) =>
      navigate(withParam(query, { brand: toggled(brands, v).join(',') }))));
  }
  for (const [key, counts] of Object.entries(facets.attributes || {})) {
    groups.push(checkGroup(capitalise(key), `attr-${key}`, counts.map((f) => [`${key}:${f.value}`, f.value, f.count]), attrs, (v) =>
      navigate(withParam(query, { attr: toggled(attrs, v).join(',') }))));
  }
  groups.push(stockToggle(query));
  groups.push(priceForm(query));
  const active = ['category', 'brand', 'attr', 'price_min', 'price_max', 'in_stock'].some((k) => query.get(k));
  // Open beside the results on wide screens; folded above them on a phone.
  const wide = window.matchMedia('(min-width: 48rem)').matches;
  return h('aside', { class: 'facets', 'aria-label': 'Filters' },
    h('details', { open: wide || active },
      h('summary', {}, h('h2', {}, 'Filters')),
      active ? h('a', { href: withParam(new URLSearchParams(query.get('q') ? { q: query.get('q') } : {}), {}) }, 'Clear all filters') : null,
      groups));
}

function checkGroup(legend, name, options, selected, onToggle) {
  return h('fieldset', { class: 'facet' }, h('legend', {}, legend),
    h('ul', {}, options.map(([value, text, count], i) => {
      const id = `${name}-${i}`;
      const box = h('input', { type: 'checkbox', id, name, value, checked: selected.includes(value) });
      box.addEventListener('change', () => onToggle(value));
      return h('li', { class: 'check' }, box, h('label', { for: id }, `${text} (${count})`));
    })));
}

// Only products the order service reports in stock (`in_stock=true`); products whose stock was
// never reported are left out too.
function stockToggle(query) {
  const on = query.get('in_stock') === 'true';
  const box = h('input', { type: 'checkbox', id: 'in-stock', name: 'in_stock', checked: on });
  box.addEventListener('change', () => navigate(withParam(query, { in_stock: on ? null : 'true' })));
  return h('fieldset', { class: 'facet' }, h('legend', {}, 'Availability'),
    h('div', { class: 'check' }, box, h('label', { for: 'in-stock' }, 'In stock only')));
}

function priceForm(query) {
  const min = query.get('price_min');
  const max = query.get('price_max');
  const error = h('p', { class: 'field-error', role: 'alert', hidden: true });
  const form = h('form', { class: 'facet price-filter', novalidate: true },
    h('fieldset', {}, h('legend', {}, 'Price (€)'),
      h('div', { class: 'row' },
        h('div', { class: 'field' }, h('label', { for: 'price-min' }, 'From'),
          h('input', { id: 'price-min', name: 'price_min', inputmode: 'decimal', value: min ? fromMinor(Number(min)) : '' })),
        h('div', { class: 'field' }, h('label', { for: 'price-max' }, 'To'),
          h('input', { id: 'price-max', name: 'price_max', inputmode: 'decimal', value: max ? fromMinor(Number(max)) : '' }))),
      error,
      h('button', { type: 'submit' }, 'Apply price')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const lo = form.price_min.value.trim();
    const hi = form.price_max.value.trim();
    const loMinor = lo ? toMinor(lo) : null;
    const hiMinor = hi ? toMinor(hi) : null;
    if (Number.isNaN(loMinor) || Number.isNaN(hiMinor)) {
      error.textContent = 'Prices are amounts like 20 or 19.99.';
      error.hidden = false;
      return;
    }
    navigate(withParam(query, { price_min: loMinor, price_max: hiMinor }));
  });
  return form;
}

function pager(query, data) {
  const pages = Math.max(1, Math.ceil(Math.min(data.total, 10000) / data.page_size));
  if (pages <= 1) return null;
  const current = data.page;
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    current > 1 ? h('a', { href: withParam(query, { page: current - 1 }), rel: 'prev' }, '‹ Previous') : null,
    h('span', {}, `Page ${current} of ${pages}`),
    current < pages ? h('a', { href: withParam(query, { page: current + 1 }), rel: 'next' }, 'Next ›') : null);
}

function parentOf(path) {
  const i = path.lastIndexOf('/');
  return i > 0 ? path.slice(0, i) : null;
}

function lastPart(path) {
  return capitalise(path.slice(path.lastIndexOf('/') + 1).replaceAll('-', ' '));
}

function capitalise(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}
