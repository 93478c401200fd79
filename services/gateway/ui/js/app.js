// Starts the shop: the header (search, cart count, account menu by role) and the routes.

import * as api from './api.js';
import { h, replace } from './dom.js';
import { navigate, route, start } from './router.js';
import * as admin from './views/admin.js';
import * as auth from './views/auth.js';
import * as cart from './views/cart.js';
import * as checkout from './views/checkout.js';
import { setFlash } from './views/common.js';
import * as orders from './views/orders.js';
import * as partner from './views/partner.js';
import * as product from './views/product.js';
import * as search from './views/search.js';

route('/', search.results);
route('/search', search.results);
route('/products/:id', product.view);
route('/login', auth.login);
route('/signup', auth.signup);
route('/cart', cart.view, { auth: true });
route('/checkout', checkout.view, { auth: true });
route('/orders', orders.list, { auth: true });
route('/orders/:id', orders.detail, { auth: true });
route('/partner', partner.view, { role: 'partner' });
route('/admin', admin.products, { role: 'admin' });
route('/admin/products/new', admin.newProduct, { role: 'admin' });
route('/admin/products/:id', admin.editProduct, { role: 'admin' });
route('/admin/partners', admin.partners, { role: 'admin' });
route('/admin/mailbox', admin.mailbox, { role: 'admin' });

const nav = document.getElementById('account-nav');
const cartCount = h('span', { class: 'count', id: 'cart-count' }, '');

function drawNav() {
  const s = api.currentSession();
  const link = (href, text, extra) => h('li', {}, h('a', { href }, text, extra || null));
  if (!s) {
    replace(nav, h('ul', {}, link('/login', 'Log in'), link('/signup', 'Sign up')));
    return;
  }
  const roles = s.user?.roles || [];
  replace(nav, h('ul', {},
    link('/cart', 'Cart ', cartCount),
    link('/orders', 'Orders'),
    roles.includes('partner') ? link('/partner', 'Deliveries') : null,
    roles.includes('admin') ? link('/admin', 'Admin') : null,
    roles.includes('admin') ? link('/admin/mailbox', 'Mailbox') : null,
    h('li', {}, h('button', {
      type: 'button', class: 'link', id: 'logout',
      onclick: async () => {
        await api.logOut();
        setFlash('You are logged out.', 'info');
        navigate('/');
      },
    }, `Log out${s.user?.name ? ` (${s.user.name})` : ''}`))));
}

async function refreshCartCount() {
  if (!api.currentSession()) return;
  try {
    const c = await api.cart();
    cartCount.textContent = c.item_count ? String(c.item_count) : '';
  } catch {
    // The count is a nicety; the cart page shows the real errors.
  }
}

document.addEventListener('storefront:cart', (e) => {
  cartCount.textContent = e.detail ? String(e.detail) : '';
});
api.onSessionChange(() => {
  drawNav();
  refreshCartCount();
});

document.getElementById('search-slot').replaceWith(search.searchBox());
drawNav();
refreshCartCount();

start(document.getElementById('app'), (options, here) => {
  const s = api.currentSession();
  if ((options.auth || options.role) && !s) {
    setFlash('Please log in first.', 'info');
    navigate(`/login?next=${encodeURIComponent(here)}`, { replace: true });
    return false;
  }
  if (options.role && !api.hasRole(options.role)) {
    setFlash(`This page is for the ${options.role} role only.`, 'error');
    navigate('/', { replace: true });
    return false;
  }
  return true;
});
