// Log in and sign up.

import * as api from '../api.js';
import { busy, field, h, messageBox, values } from '../dom.js';
import { navigate } from '../router.js';
import { handle, page } from './common.js';

function safeNext(query) {
  const next = query.get('next') || '/';
  return next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

export function login(_params, query) {
  const box = messageBox();
  const form = h('form', { class: 'form narrow', novalidate: true, 'aria-label': 'Log in' },
    field({ label: 'E-mail', name: 'email', type: 'email', autocomplete: 'username', required: true, autofocus: true }),
    field({ label: 'Password', name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
    box,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Log in')),
    h('p', {}, 'New here? ', h('a', { href: `/signup${location.search}` }, 'Create an account')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, async () => {
      try {
        await api.logIn(values(form));
        navigate(safeNext(query), { replace: true });
      } catch (error) {
        handle(error, { form, box });
      }
    });
  });
  return { title: 'Log in', node: page('Log in', form) };
}

export function signup(_params, query) {
  const box = messageBox();
  const form = h('form', { class: 'form narrow', novalidate: true, 'aria-label': 'Sign up' },
    field({ label: 'Name', name: 'name', autocomplete: 'name', required: true, autofocus: true, maxlength: 100 }),
    field({ label: 'E-mail', name: 'email', type: 'email', autocomplete: 'email', required: true }),
    field({
      label: 'Password', name: 'password', type: 'password', autocomplete: 'new-password', required: true,
      minlength: 12, hint: 'At least 12 characters.',
    }),
    box,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Sign up')),
    h('p', {}, 'Have an account? ', h('a', { href: `/login${location.search}` }, 'Log in')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, async () => {
      const v = values(form);
      try {
        await api.signUp(v);
        await api.logIn({ email: v.email, password: v.password });
        navigate(safeNext(query), { replace: true });
      } catch (error) {
        handle(error, { form, box });
      }
    });
  });
  return { title: 'Sign up', node: page('Create your account', form) };
}
