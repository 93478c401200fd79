// The shop's API client: same-origin fetch to /api, bearer tokens, one refresh on 401,
// problem+json errors turned into ApiError with the detail, the field errors and Retry-After.

const STORE_KEY = 'storefront.session';

/** An error answer of the API (or the network), ready to show. */
export class ApiError extends Error {
  constructor({ status = 0, title = '', detail = '', errors = [], retryAfter = null, type = '' }) {
    super(detail || title || `Request failed (${status})`);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.type = type;
    /** Field errors: [{field, message}] */
    this.errors = errors;
    /** Seconds, from Retry-After on 429/503. */
    this.retryAfter = retryAfter;
  }

  /** What to tell the user. */
  get userMessage() {
    if (this.status === 429) {
      return `Too many requests, retry in ${this.retryAfter ?? 1} s.`;
    }
    if (this.status === 0) return this.detail || 'The shop cannot be reached. Check your connection and retry.';
    if (this.status >= 500 && !this.detail) return 'Something went wrong on our side. Please retry.';
    return this.detail || this.title || `Request failed (${this.status}).`;
  }
}

/** Raised when the session is gone for good (refresh failed): the app sends the user to log in. */
export class SessionExpired extends ApiError {}

let session = load();
const listeners = new Set();

function load() {
  try {
    return JSON.parse(localStorage.getItem(STORE_KEY)) || null;
  } catch {
    return null;
  }
}

function save(next) {
  session = next;
  if (next) localStorage.setItem(STORE_KEY, JSON.stringify(next));
  else localStorage.removeItem(STORE_KEY);
  for (const fn of listeners) fn(session);
}

/** The current session: {access_token, refresh_token, user: {id, email, name, roles}} or null. */
export function currentSession() {
  return session;
}

export function onSessionChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function hasRole(role) {
  return Boolean(session?.user?.roles?.includes(role));
}

function retryAfterSeconds(response) {
  const raw = response.headers.get('Retry-After');
  if (!raw) return null;
  const secs = Number(raw);
  if (Number.isFinite(secs)) return Math.max(1, Math.ceil(secs));
  const date = Date.parse(raw);
  return Number.isFinite(date) ? Math.max(1, Math.ceil((date - Date.now()) / 1000)) : null;
}

async function toError(response) {
  let body = null;
  const type = response.headers.get('Content-Type') || '';
  if (type.includes('json')) {
    try {
      body = await response.json();
    } catch {
      body = null;
    }
  }
  return new ApiError({
    status: response.status,
    title: body?.title || response.statusText,
    detail: body?.detail || '',
    type: body?.type || '',
    errors: Array.isArray(body?.errors) ? body.errors : [],
    retryAfter: retryAfterSeconds(response),
  });
}

let refreshing = null;

/** Spends the refresh token once; concurrent callers share the same attempt. */
async function refreshSession() {
  const token = session?.refresh_token;
  if (!token) return false;
  refreshing ??= (async () => {
    try {
      const response = await fetch('/api/sessions/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ refresh_token: token }),
      });
      if (!response.ok) return false;
      const tokens = await response.json();
      save({ ...session, access_token: tokens.access_token, refresh_token: tokens.refresh_token });
      return true;
    } catch {
      return false;
    } finally {
      queueMicrotask(() => {
        refreshing = null;
      });
    }
  })();
  return refreshing;
}

/**
 * Calls the API. `options`: method, body (JSON-encoded), headers, auth (default: send the token
 * when there is one). Resolves with the parsed JSON (or null for 204), plus `.headers` via
 * `raw: true` ({data, response}).
 */
export async function request(path, { method = 'GET', body, headers = {}, auth = true, raw = false } = {}) {
  const send = async () => {
    const h = { Accept: 'application/json', ...headers };
    if (body !== undefined) h['Content-Type'] = 'application/json';
    if (auth && session?.access_token) h.Authorization = `Bearer ${session.access_token}`;
    try {
      return await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError({ status: 0, detail: 'The shop cannot be reached. Check your connection and retry.' });
    }
  };
  const hadSession = Boolean(session);
  let response = await send();
  if (response.status === 401 && auth) {
    // Spend the refresh token once (shared with concurrent calls), then give up.
    if (session && (await refreshSession())) {
      response = await send();
    }
    if (response.status === 401) {
      save(null);
      const err = await toError(response);
      throw new SessionExpired({
        ...err,
        status: 401,
        detail: hadSession ? 'Your session expired. Please log in again.' : 'Please log in.',
      });
    }
  }
  if (!response.ok) throw await toError(response);
  const data = response.status === 204 ? null : await parse(response);
  return raw ? { data, response } : data;
}

async function parse(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const enc = encodeURIComponent;

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** A random Idempotency-Key (works outside secure contexts too). */
export function newIdempotencyKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// --- Accounts and sessions ---

export async function signUp({ name, email, password }) {
  return request('/api/accounts', { method: 'POST', body: { name, email, password }, auth: false });
}

export async function logIn({ email, password }) {
  const tokens = await request('/api/sessions', { method: 'POST', body: { email, password }, auth: false });
  // Held (not yet saved or announced) until the account is known, so the header draws once.
  session = { access_token: tokens.access_token, refresh_token: tokens.refresh_token, user: null };
  try {
    const user = await request('/api/me');
    save({ ...session, user });
  } catch (e) {
    save(null);
    throw e;
  }
  return session.user;
}

export async function logOut() {
  const token = session?.refresh_token;
  save(null);
  if (token) {
    try {
      await request('/api/sessions', { method: 'DELETE', body: { refresh_token: token }, auth: false });
    } catch {
      // The tokens are forgotten here either way.
    }
  }
}

/** Forgets the session without calling the API (e.g. after it expired). */
export function dropSession() {
  save(null);
}

// --- Catalog ---

export const search = (params) => request(`/api/search${query(params)}`, { auth: false });
export const suggest = (q, limit = 8) => request(`/api/suggest${query({ q, limit })}`, { auth: false });
export const product = (id) => request(`/api/products/${enc(id)}`, { auth: false, raw: true });

// --- Cart ---

export const cart = () => request('/api/cart');
export const addToCart = (product_id, quantity) =>
  request('/api/cart/items', { method: 'POST', body: { product_id, quantity } });
export const setQuantity = (product_id, quantity) =>
  request(`/api/cart/items/${enc(product_id)}`, { method: 'PATCH', body: { quantity } });
export const removeFromCart = (product_id) => request(`/api/cart/items/${enc(product_id)}`, { method: 'DELETE' });
export const clearCart = () => request('/api/cart', { method: 'DELETE' });

// --- Orders ---

export const placeOrder = (body, key) =>
  request('/api/orders', { method: 'POST', body, headers: { 'Idempotency-Key': key } });
export const orders = (cursor, limit = 20) => request(`/api/orders${query({ limit, cursor })}`);
export const order = (id) => request(`/api/orders/${enc(id)}`);
export const cancelOrder = (id, reason) =>
  request(`/api/orders/${enc(id)}/cancel`, { method: 'POST', body: reason ? { reason } : {} });
export const delivery = (orderId) => request(`/api/deliveries/${enc(orderId)}`);

// --- Partner ---

export const partnerDeliveries = () => request('/api/partner/deliveries');
export const advanceDelivery = (orderId, step) =>
  request(`/api/partner/deliveries/${enc(orderId)}/${step}`, { method: 'POST' });
export const myPartner = () => request('/api/partner');

export const setAvailability = (on_shift) =>
  request('/api/partner/availability', { method: 'PUT', body: { on_shift } });

// --- Admin ---

export const createProduct = (input) => request('/api/admin/products', { method: 'POST', body: input });
export const updateProduct = (id, input, version) =>
  request(`/api/admin/products/${enc(id)}`, {
    method: 'PUT',
    body: input,
    headers: { 'If-Match': `"${version}"` },
  });
export const stock = (productId) => request(`/api/admin/stock/${enc(productId)}`);
export const setStock = (productId, available) =>
  request(`/api/admin/stock/${enc(productId)}`, { method: 'PUT', body: { available } });
export const partners = (after) => request(`/api/admin/partners${query({ after, limit: 100 })}`);
export const createPartner = (input) => request('/api/admin/partners', { method: 'POST', body: input });
export const patchPartner = (id, patch) =>
  request(`/api/admin/partners/${enc(id)}`, { method: 'PATCH', body: patch });
export const notifications = (limit = 50) => request(`/api/admin/notifications${query({ limit })}`);
