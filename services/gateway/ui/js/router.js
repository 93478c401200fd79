// History-API router: patterns like "/orders/:id", links with data-link (or any same-origin
// <a>) handled without a page load, and a cleanup hook per view (stops polling on leave).

const routes = [];
let cleanup = null;
let renderId = 0;

/** Registers `view(params, query)`; it returns {title, node, cleanup?} (or a promise of it). */
export function route(pattern, view, options = {}) {
  const keys = [];
  const regex = new RegExp(
    `^${pattern.replace(/\/:([a-z_]+)/gi, (_, k) => {
      keys.push(k);
      return '/([^/]+)';
    })}/?$`,
  );
  routes.push({ regex, keys, view, options });
}

export function navigate(to, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  render();
}

let outlet;
let before = () => true;

/** Starts routing into `el`; `guard(options)` may redirect (returns false) before a view renders. */
export function start(el, guard) {
  outlet = el;
  before = guard || before;
  window.addEventListener('popstate', render);
  document.addEventListener('click', (event) => {
    const a = event.target.closest?.('a[href]');
    if (!a || a.target || a.hasAttribute('download') || event.defaultPrevented) return;
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  render();
}

export async function render() {
  const id = ++renderId;
  if (cleanup) {
    try {
      cleanup();
    } catch {
      // A view's cleanup failing must not block the next view.
    }
    cleanup = null;
  }
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  for (const r of routes) {
    const m = path.match(r.regex);
    if (!m) continue;
    if (!before(r.options, path + location.search)) return;
    const params = Object.fromEntries(r.keys.map((k, i) => [k, decodeURIComponent(m[i + 1])]));
    outlet.setAttribute('aria-busy', 'true');
    const result = await r.view(params, query);
    if (id !== renderId) {
      result?.cleanup?.();
      return;
    }
    outlet.removeAttribute('aria-busy');
    show(result);
    return;
  }
  show({ title: 'Not found', node: notFound() });
}

function show(result) {
  cleanup = result.cleanup || null;
  document.title = result.title ? `${result.title} · Storefront` : 'Storefront';
  outlet.replaceChildren(result.node);
  document.dispatchEvent(new CustomEvent('storefront:navigated'));
  // Move focus to the page heading so keyboard and screen-reader users land on the new view.
  const heading = outlet.querySelector('h1');
  if (heading && !outlet.querySelector('[autofocus]')) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: false });
  } else {
    outlet.querySelector('[autofocus]')?.focus();
  }
}

function notFound() {
  const section = document.createElement('section');
  const h1 = document.createElement('h1');
  h1.textContent = 'Page not found';
  const p = document.createElement('p');
  const a = document.createElement('a');
  a.href = '/';
  a.textContent = 'Back to the shop';
  p.append(a);
  section.append(h1, p);
  return section;
}
