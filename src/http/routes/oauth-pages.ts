import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { ApiError } from '../../errors.js';
import type { SessionUser } from '../../domain/records.js';

/**
 * The pages people see during user authorization (plain HTML, no script, no build step, no
 * CDN): the sandbox consent page of local portals, the Bitrix24 callback, and the
 * "you can close this window" page. Refusals are pages too (with the error code), since a
 * person, not a program, reads them.
 */

const esc = (text: string) => text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;font:inherit;box-sizing:border-box}
.buttons{margin-top:1.2rem;display:flex;gap:.6rem}button{padding:.5rem 1.2rem;font:inherit;cursor:pointer}
.error{color:#a00}.muted{color:#666;font-size:.9rem}code{background:#f3f3f3;padding:0 .2rem}`;

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="referrer" content="no-referrer"><title>${esc(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>`;
}

/** No framing (clickjacking of the consent), no referrer (the URL holds the flow's secret), no caching, no scripts. */
function sendPage(reply: FastifyReply, status: number, html: string): FastifyReply {
  return reply
    .code(status)
    .headers({
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
      'x-content-type-options': 'nosniff',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
    })
    .send(html);
}

function errorPage(reply: FastifyReply, error: ApiError): FastifyReply {
  return sendPage(reply, error.status, page('Authorization failed', `<h1>Authorization failed</h1><p class="error">${esc(error.message)}</p>${error.hint ? `<p>${esc(error.hint)}</p>` : ''}<p class="muted">Error code: <code id="error-code">${esc(error.code)}</code></p>`));
}

/** Runs a page's work; a refusal (ApiError) is shown as an error page with its status and code. */
async function orErrorPage(reply: FastifyReply, work: () => Promise<FastifyReply>): Promise<FastifyReply> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ApiError) return errorPage(reply, error);
    throw error;
  }
}

function redirect(reply: FastifyReply, location: string): FastifyReply {
  return reply.headers({ 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' }).redirect(location, 303);
}

interface ConsentForm {
  flow?: string;
  userId?: string;
  name?: string;
  email?: string;
  decision?: string;
}

function consentPage(flow: string, view: { keyName: string; portalName: string }, values: ConsentForm = {}, problem?: string): string {
  return page(
    'Authorize application',
    `<h1>Authorize “${esc(view.keyName)}”</h1>
<p>The application asks to act on the local portal <strong>${esc(view.portalName)}</strong> as the user you name below. This is smartproc's sandbox consent page: there are no passwords, you choose the user.</p>
${problem ? `<p class="error" id="problem">${esc(problem)}</p>` : ''}
<form method="post" action="/oauth/sandbox">
<input type="hidden" name="flow" value="${esc(flow)}">
<label for="userId">User id (a positive number)</label><input id="userId" name="userId" inputmode="numeric" required value="${esc(values.userId ?? '')}">
<label for="name">Name</label><input id="name" name="name" maxlength="200" value="${esc(values.name ?? '')}">
<label for="email">E-mail</label><input id="email" name="email" type="email" maxlength="254" value="${esc(values.email ?? '')}">
<div class="buttons"><button type="submit" name="decision" value="approve" id="approve">Approve</button><button type="submit" name="decision" value="deny" id="deny" formnovalidate>Deny</button></div>
</form>`,
  );
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** The consent form's user, or what is wrong with it. */
function userOf(form: ConsentForm): SessionUser | string {
  const raw = (form.userId ?? '').trim();
  if (!/^\d{1,10}$/.test(raw) || Number(raw) < 1 || Number(raw) > 2_147_483_647) return 'The user id must be a whole number from 1 to 2147483647.';
  const name = (form.name ?? '').trim();
  const email = (form.email ?? '').trim();
  if (name.length > 200) return 'The name must be at most 200 characters.';
  if (email && (email.length > 254 || !EMAIL.test(email))) return 'The e-mail address is not valid.';
  return { id: Number(raw), name: name || null, email: email || null };
}

const oauthPages: FastifyPluginAsync = async (app) => {
  const flows = app.services.authorization;
  // The consent form posts application/x-www-form-urlencoded (this plugin only).
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16 * 1024 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  const one = (value: unknown) => (typeof value === 'string' ? value : undefined);

  app.get('/sandbox', {
    schema: { tags: ['User authorization'], summary: 'Sandbox consent page of a local portal (HTML)', description: 'Where GET /v1/oauth/authorize sends the person for a local portal: they enter which user (id, name, e-mail) they act as, and approve or deny.', security: [] },
  }, async (request, reply) => {
    const flow = one((request.query as Record<string, unknown>).flow);
    return orErrorPage(reply, async () => sendPage(reply, 200, consentPage(flow!, await flows.consentView(flow))));
  });

  app.post('/sandbox', {
    schema: { tags: ['User authorization'], summary: 'The answer of the sandbox consent page (form post)', security: [] },
  }, async (request, reply) => {
    const form = (request.body && typeof request.body === 'object' ? request.body : {}) as ConsentForm;
    return orErrorPage(reply, async () => {
      if (form.decision === 'deny') return redirect(reply, await flows.consentDecision(form.flow, { approve: false, user: { id: 0, name: null, email: null } }));
      const user = userOf(form);
      if (typeof user === 'string') return sendPage(reply, 400, consentPage(form.flow ?? '', await flows.consentView(form.flow), form, user));
      return redirect(reply, await flows.consentDecision(form.flow, { approve: true, user }));
    });
  });

  app.get('/callback', {
    schema: {
      tags: ['User authorization'],
      summary: 'Where Bitrix24 returns the person (register PUBLIC_URL/oauth/callback in the Bitrix24 application)',
      description: 'Bitrix24 adds code, state, domain, member_id, scope, server_domain. smartproc exchanges the code (grant_type=authorization_code), asks user.current who the user is, and continues like the sandbox page.',
      security: [],
    },
  }, async (request, reply) => {
    const q = request.query as Record<string, unknown>;
    return orErrorPage(reply, async () => redirect(reply, await flows.callback({ code: one(q.code), state: one(q.state), member_id: one(q.member_id), error: one(q.error) })));
  });

  app.get('/complete', {
    schema: { tags: ['User authorization'], summary: 'The last page of an authorization without redirect_uri (HTML): "you can close this window"', security: [] },
  }, async (request, reply) => {
    const q = request.query as Record<string, unknown>;
    if (one(q.status) === 'success') {
      return sendPage(reply, 200, page('Authorized', '<h1 id="done">Authorization complete</h1><p>You can close this window and return to the application.</p>'));
    }
    const code = one(q.error) ?? 'AUTHORIZATION_DENIED';
    const safe = /^[A-Z_]{1,40}$/.test(code) ? code : 'AUTHORIZATION_DENIED';
    return sendPage(reply, 200, page('Not authorized', `<h1>Not authorized</h1><p>The application was not authorized. You can close this window.</p><p class="muted">Error code: <code id="error-code">${esc(safe)}</code></p>`));
  });
};

export default oauthPages;
