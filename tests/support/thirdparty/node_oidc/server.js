// Test-only OpenID provider: node-oidc-provider with a public native client `jwt-desktop`
// and a tiny sign-in/consent interaction that checks the demo users' passwords.
// Run: OIDC_PROVIDER_MODULE=<cache>/node_modules/oidc-provider/lib/index.js node server.js
// (the package lives in a cache folder outside the repository, so it is imported by path).
// Prints "node-oidc-provider listening on http://127.0.0.1:PORT" once it listens.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';

const { default: Provider } = await import(pathToFileURL(process.env.OIDC_PROVIDER_MODULE).href);

const USERS = {
  alice: { password: 'wonderland', groups: ['staff', 'admin'], name: 'Alice' },
  bob: { password: 'builder', groups: ['staff'], name: 'Bob' },
};
const accessTtl = Number(process.env.OIDC_ACCESS_TTL || '300');
const dpopNonce = process.env.OIDC_DPOP_NONCE === '1';

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`;

const server = createServer();
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'jwt-desktop',
    client_name: 'jwt-desktop',
    // native + a portless loopback URI: any port matches (RFC 8252 §7.3).
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback', 'http://[::1]/callback'],
  }],
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  async findAccount(ctx, sub) {
    const user = USERS[sub];
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub, name: user.name, preferred_username: sub, email: `${sub}@example.org`,
          email_verified: true, groups: user.groups,
        };
      },
    };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
    dPoP: dpopNonce
      ? { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true }
      : { enabled: true },
  },
  rotateRefreshToken: true,
  ttl: { AccessToken: accessTtl, IdToken: accessTtl },
  // Unsigned, per-process cookie keys are fine for a throwaway test server.
  cookies: { keys: [randomBytes(16).toString('hex')] },
});

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(html);
}

function loginForm(uid, error) {
  return page('Sign in', `${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}">
<label>Username <input type="text" name="username" autofocus></label>
<label>Password <input type="password" name="password"></label>
<button type="submit" name="decision" value="allow">Sign in</button>
<button type="submit" name="decision" value="deny">Cancel</button></form>`);
}

function consentForm(uid, clientId, details) {
  const scopes = (details.missingOIDCScope || []).map((s) => `<li>${escape(s)}</li>`).join('');
  return page(`Allow ${clientId}?`, `<ul>${scopes}</ul>
<form method="post" action="/interaction/${escape(uid)}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></form>`);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session, grantId } = details;
  if (req.method === 'GET') {
    const html = prompt.name === 'login'
      ? loginForm(uid) : consentForm(uid, params.client_id, prompt.details);
    return send(res, 200, html);
  }
  const form = await readForm(req);
  if (form.get('decision') !== 'allow') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'The person refused',
    }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'login') {
    const user = USERS[form.get('username')];
    if (!user || user.password !== form.get('password')) {
      return send(res, 401, loginForm(uid, 'Wrong username or password'));
    }
    return provider.interactionFinished(req, res, {
      login: { accountId: form.get('username') },
    }, { mergeWithLastSubmission: false });
  }
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scope] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scope.join(' '));
    }
  }
  return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
    mergeWithLastSubmission: true,
  });
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (/^\/interaction\/[^/]+$/.test(new URL(req.url, issuer).pathname)) {
    interaction(req, res).catch((err) => {
      send(res, 400, page('Error', `<p>${escape(err.message)}</p>`));
    });
  } else {
    callback(req, res);
  }
});
console.log(`node-oidc-provider listening on ${issuer}`);
