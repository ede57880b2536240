// A real OpenID Connect provider (panva's oidc-provider, pinned in package-lock.json) standing in for
// Microsoft Entra ID in the sign-in tests. tools/oidc_server.py writes the configuration and starts it:
//
//   node server.mjs CONFIG.json
//
// CONFIG: {"issuer": "https://127.0.0.1:PORT/TENANT/v2.0", "port": PORT, "tls": {"cert": PEM path, "key": PEM path},
//          "jwk": private RSA JWK (signs ID tokens), "cookie_key": "...",
//          "client": {"client_id", "client_secret", "redirect_uris": [...]}
//                    (or "token_endpoint_auth_method": "private_key_jwt" and "jwks" instead of the secret),
//          "accounts": {"NAME": {"password": "...", "claims": {"oid", "tid", "groups", "roles", ...}}}}
//
// Like Entra ID: the issuer has the tenant in its path, the authorization code flow needs PKCE, the
// ID token itself carries the `groups` (group object ids), `roles` (app roles), `tid` and `oid` claims,
// and it is signed RS256 with a key published at the JWKS endpoint. The sign-in page is a minimal form
// of our own (user name and password of the accounts above); consent is never asked, as for an
// application an Entra administrator has consented to for the whole tenant.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = new URL(config.issuer);
const prefix = issuer.pathname.replace(/\/$/, '');
const accounts = config.accounts;

const provider = new Provider(config.issuer, {
  // A client secret (client_secret_post), or a certificate's key (private_key_jwt, its public key in `jwks`).
  clients: [{
    token_endpoint_auth_method: 'client_secret_post',
    ...config.client,
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  jwks: { keys: [config.jwk] },
  cookies: { keys: [config.cookie_key] },
  pkce: { required: () => true },
  // Entra ID puts the user's claims in the ID token of the code flow; the product reads them there.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub', 'tid', 'oid', 'groups', 'roles'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
  },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `${prefix}/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    if (!accounts[id]) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...accounts[id].claims }) };
  },
  // Tenant-wide admin consent: every scope the client asks is granted without a consent page.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
    await grant.save();
    return grant;
  },
});

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(uid, message) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Sign in</title></head><body>
<h1>Sign in to the test tenant</h1>${message ? `<p id="error">${escape(message)}</p>` : ''}
<form method="post" action="${prefix}/interaction/${escape(uid)}">
<label>User name <input id="username" name="username" autofocus></label>
<label>Password <input id="password" name="password" type="password"></label>
<button id="sign-in" type="submit">Sign in</button></form></body></html>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (req.method === 'POST') {
    const form = await readForm(req);
    const account = accounts[form.get('username')];
    if (account && account.password === form.get('password')) {
      await provider.interactionFinished(req, res, { login: { accountId: form.get('username') } }, { mergeWithLastSubmission: false });
      return;
    }
    res.statusCode = 200;
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(page(uid, 'Wrong user name or password.'));
    return;
  }
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(page(uid));
}

const callback = provider.callback();
const server = createServer({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) }, (req, res) => {
  const url = new URL(req.url, config.issuer);
  if (!url.pathname.startsWith(`${prefix}/`)) {
    res.statusCode = 404;
    res.end();
    return;
  }
  const match = url.pathname.slice(prefix.length).match(/^\/interaction\/([\w-]+)$/);
  if (match) {
    interaction(req, res, match[1]).catch((err) => {
      res.statusCode = 400;
      res.end(String(err.message));
    });
    return;
  }
  // Mounted under the issuer's path, as Entra ID's /TENANT/v2.0: oidc-provider reads originalUrl for it.
  req.originalUrl = req.url;
  req.url = req.url.slice(prefix.length) || '/';
  callback(req, res);
});
server.listen(config.port, issuer.hostname, () => process.stdout.write(`listening ${config.issuer}\n`));
