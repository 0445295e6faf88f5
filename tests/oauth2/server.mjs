#!/usr/bin/env node
/**
 * A plain OAuth 2.0 authorization server shaped like OpenStreetMap's, for
 * Sésame's tests of providers that speak no OpenID Connect.
 *
 * It has no ID token, no discovery document, no nonce and no `iss` in the
 * authorization response: the identity comes from an API call, OSM's
 * /api/0.6/user/details.json, with the access token. Its users have no email.
 * It shows no login form: a "current user", set by a test-only endpoint, is
 * signed in at once. Node built-ins only.
 *
 * Usage:
 *   node tests/oauth2/server.mjs --port PORT [--host 127.0.0.1]
 *     --redirect-uri URI [--redirect-uri URI ...]   (or comma-separated)
 *     [--client-id sesame-osm] [--client-secret osm-secret]
 *     [--enforce-pkce] [--no-refresh]
 *
 * Users (fixed): `mapper` (id 4242, "Carto Mapper", the default) and `other`
 * (id 777, "Other Mapper").
 *
 * Endpoints:
 *   GET /oauth2/authorize?response_type=code&client_id&redirect_uri&scope
 *       &state[&code_challenge&code_challenge_method=S256][&deny=1]
 *     client_id and redirect_uri must match exactly (one of --redirect-uri),
 *     else 400 text/plain and no redirect. Otherwise a 302 to redirect_uri
 *     with `state` echoed exactly (left out when absent) and:
 *       - error=unsupported_response_type unless response_type=code;
 *       - error=invalid_request for a code_challenge_method other than S256,
 *         or a code_challenge without a method or of the wrong form;
 *       - error=access_denied with `deny=1` or when the current user is
 *         `__deny__`;
 *       - else code=<random, single use, valid 60 s>, bound to the client,
 *         the redirect_uri, the scope, the code_challenge (if any) and the
 *         current user.
 *   POST /oauth2/token (application/x-www-form-urlencoded)
 *     Client authentication by client_secret_post (client_id and
 *     client_secret in the form) or client_secret_basic (Authorization:
 *     Basic of the form-urlencoded id and secret); otherwise 401
 *     {"error":"invalid_client"}.
 *       - grant_type=authorization_code: code (single use: spent even by a
 *         refused request), client and redirect_uri must match; a code made
 *         with a code_challenge needs a code_verifier whose S256 hash
 *         (base64url, no padding) equals it; a code made without one is
 *         refused when a code_verifier is sent (RFC 9700 2.1.1) and, with
 *         --enforce-pkce, always.
 *       - grant_type=refresh_token: a live refresh token of this client; it
 *         is revoked and a new one returned (rotation). An optional `scope`
 *         must not ask for more than the original grant.
 *     Errors: 400 {"error":"invalid_grant"} (or invalid_request,
 *     unsupported_grant_type, invalid_scope). Success: 200 {"access_token",
 *     "token_type":"Bearer", "expires_in", "refresh_token" (not with
 *     --no-refresh), "scope", "created_at"}.
 *   GET /api/0.6/user/details.json with Authorization: Bearer <access token>
 *     200 application/json {"version":"0.6","generator":"test","user":{"id",
 *     "display_name","account_created","description","img":{"href"},
 *     "roles":[],"changesets":{"count"}}}; else 401 with WWW-Authenticate:
 *     Bearer. Access tokens stop working after their expires_in.
 *
 * Test-only endpoints (JSON):
 *   POST /__test/user {"login": "mapper" | "other" | "__deny__"}
 *   POST /__test/expires_in {"seconds": N}   expires_in of the next tokens
 *        (null: no expires_in and tokens that never expire, like real OSM)
 *   GET  /__test/stats -> {"authorize", "token_code", "token_refresh",
 *        "token_refused", "userinfo", "userinfo_refused": counts,
 *        "last_authorize": {query} | null, "last_token": {form, with
 *        client_secret "[redacted]"} | null, "last_token_client_auth":
 *        "client_secret_basic" | "client_secret_post" | null,
 *        "current_user", "expires_in"}
 *        (token_code and token_refresh count every request of that grant
 *        type, refused ones included; token_refused counts refusals)
 *   POST /__test/reset   zero the counters, forget the last requests, user
 *        back to mapper, expires_in back to 3600 (tokens stay valid).
 *
 * One line is logged per request (method, path without query, status);
 * codes, tokens and secrets are never printed. `listening on
 * http://HOST:PORT` is printed once ready (`--port 0` picks a free port).
 * SIGTERM and SIGINT stop the server cleanly (exit code 0).
 */

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const USAGE = 'usage: node tests/oauth2/server.mjs --port PORT [--host 127.0.0.1] '
  + '--redirect-uri URI [--redirect-uri URI ...] [--client-id ID] [--client-secret SECRET] '
  + '[--enforce-pkce] [--no-refresh]';
const CODE_TTL_MS = 60_000;
const DEFAULT_EXPIRES_IN = 3600;
const MAX_BODY = 64 * 1024;
const DENY = '__deny__';
const DEFAULT_LOGIN = 'mapper';
const USERS = {
  mapper: { id: 4242, display_name: 'Carto Mapper', changesets: 12 },
  other: { id: 777, display_name: 'Other Mapper', changesets: 3 },
};
// RFC 7636 4.1 / 4.2: 43 to 128 unreserved characters; an S256 challenge is
// 43 base64url characters.
const VERIFIER_FORM = /^[A-Za-z0-9\-._~]{43,128}$/;
const S256_CHALLENGE_FORM = /^[A-Za-z0-9_-]{43}$/;

function fail(message) {
  process.stderr.write(`oauth2: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseCommandLine(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        host: { type: 'string', default: '127.0.0.1' },
        'client-id': { type: 'string', default: 'sesame-osm' },
        'client-secret': { type: 'string', default: 'osm-secret' },
        'redirect-uri': { type: 'string', multiple: true, default: [] },
        'enforce-pkce': { type: 'boolean', default: false },
        'no-refresh': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    fail(err.message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (values.port === undefined) fail('--port is required');
  if (!/^\d{1,5}$/.test(values.port) || Number(values.port) > 65535) fail(`invalid --port ${JSON.stringify(values.port)}`);
  const redirectUris = values['redirect-uri']
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
  if (!redirectUris.length) fail('at least one --redirect-uri is required');
  for (const uri of redirectUris) {
    try {
      new URL(uri);
    } catch {
      fail(`invalid --redirect-uri ${JSON.stringify(uri)}`);
    }
  }
  if (!values['client-id'] || !values['client-secret']) fail('--client-id and --client-secret must not be empty');
  return {
    port: Number(values.port),
    host: values.host,
    clientId: values['client-id'],
    clientSecret: values['client-secret'],
    redirectUris,
    enforcePkce: values['enforce-pkce'],
    refresh: !values['no-refresh'],
  };
}

const options = parseCommandLine(process.argv.slice(2));

// --------------------------------------------------------------------------
// State

const codes = new Map(); // code -> {clientId, redirectUri, scope, challenge, login, expires}
const accessTokens = new Map(); // token -> {login, scope, expires (ms) | null}
const refreshTokens = new Map(); // token -> {clientId, login, scope}

let currentLogin = DEFAULT_LOGIN;
let expiresIn = DEFAULT_EXPIRES_IN;
let stats;

function resetStats() {
  stats = {
    authorize: 0,
    token_code: 0,
    token_refresh: 0,
    token_refused: 0,
    userinfo: 0,
    userinfo_refused: 0,
    last_authorize: null,
    last_token: null,
    last_token_client_auth: null,
  };
}
resetStats();

const random = (bytes = 32) => randomBytes(bytes).toString('base64url');

function sameText(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

const scopeSet = (scope) => new Set(String(scope ?? '').split(' ').filter(Boolean));

// --------------------------------------------------------------------------
// HTTP helpers

function send(res, status, body, headers = {}) {
  const data = Buffer.from(body);
  res.writeHead(status, {
    'Content-Length': data.length,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  });
  res.end(data);
}

function sendText(res, status, text) {
  send(res, status, `${text}\n`, { 'Content-Type': 'text/plain; charset=utf-8' });
}

function sendJson(res, status, value, headers = {}) {
  send(res, status, `${JSON.stringify(value)}\n`, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
}

function redirect(res, target) {
  send(res, 302, '', { Location: target });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
      } else {
        chunks.push(c);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function readJsonObject(req) {
  const text = await readBody(req);
  let value;
  try {
    value = text.trim() ? JSON.parse(text) : {};
  } catch {
    return null;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : null;
}

// --------------------------------------------------------------------------
// Authorization endpoint

function authorize(res, url) {
  stats.authorize += 1;
  const q = url.searchParams;
  stats.last_authorize = Object.fromEntries(q);
  const redirectUri = q.get('redirect_uri') ?? '';
  // Never redirect to an unregistered URI or for an unknown client.
  if (q.get('client_id') !== options.clientId) return sendText(res, 400, 'unknown client_id');
  if (!options.redirectUris.includes(redirectUri)) return sendText(res, 400, 'redirect_uri is not registered for this client');

  const back = new URL(redirectUri);
  const answer = (params) => {
    for (const [name, value] of Object.entries(params)) back.searchParams.append(name, value);
    if (q.has('state')) back.searchParams.append('state', q.get('state'));
    redirect(res, back.toString());
  };
  const refuse = (error, description) => answer(
    description ? { error, error_description: description } : { error },
  );

  if (q.get('response_type') !== 'code') return refuse('unsupported_response_type', 'response_type must be code');
  const challenge = q.get('code_challenge');
  const method = q.get('code_challenge_method');
  if (challenge !== null || method !== null) {
    if (method !== 'S256') return refuse('invalid_request', 'code_challenge_method must be S256');
    if (challenge === null || !S256_CHALLENGE_FORM.test(challenge)) return refuse('invalid_request', 'malformed code_challenge');
  }
  if (q.get('deny') === '1' || currentLogin === DENY) return refuse('access_denied', 'The user denied the request');

  const code = random();
  codes.set(code, {
    clientId: options.clientId,
    redirectUri,
    scope: q.get('scope') ?? '',
    challenge,
    login: currentLogin,
    expires: Date.now() + CODE_TTL_MS,
  });
  answer({ code });
}

// --------------------------------------------------------------------------
// Token endpoint

/** The authenticated client_id, or null; records how the client authenticated. */
function authenticateClient(req, form) {
  const header = req.headers.authorization;
  if (header !== undefined) {
    stats.last_token_client_auth = 'client_secret_basic';
    const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!basic) return null;
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon === -1) return null;
    let id;
    let secret;
    try {
      const unescape = (s) => decodeURIComponent(s.replaceAll('+', ' '));
      id = unescape(decoded.slice(0, colon));
      secret = unescape(decoded.slice(colon + 1));
    } catch {
      return null;
    }
    // Only one authentication method per request (RFC 6749 2.3).
    if (form.has('client_secret')) return null;
    if (form.has('client_id') && form.get('client_id') !== id) return null;
    return sameText(id, options.clientId) && sameText(secret, options.clientSecret) ? id : null;
  }
  if (form.has('client_secret')) {
    stats.last_token_client_auth = 'client_secret_post';
    const id = form.get('client_id') ?? '';
    return sameText(id, options.clientId) && sameText(form.get('client_secret'), options.clientSecret) ? id : null;
  }
  return null;
}

function issueTokens(res, grant) {
  const accessToken = random();
  accessTokens.set(accessToken, {
    login: grant.login,
    scope: grant.scope,
    expires: expiresIn === null ? null : Date.now() + expiresIn * 1000,
  });
  const body = { access_token: accessToken, token_type: 'Bearer' };
  if (expiresIn !== null) body.expires_in = expiresIn;
  if (options.refresh) {
    const refreshToken = random();
    refreshTokens.set(refreshToken, { clientId: grant.clientId, login: grant.login, scope: grant.scope });
    body.refresh_token = refreshToken;
  }
  body.scope = grant.scope;
  body.created_at = Math.floor(Date.now() / 1000);
  sendJson(res, 200, body, { Pragma: 'no-cache' });
}

function codeGrant(res, form, clientId) {
  stats.token_code += 1;
  const code = form.get('code') ?? '';
  const grant = codes.get(code);
  codes.delete(code); // single use, even when refused
  if (!grant || grant.expires < Date.now() || grant.clientId !== clientId) return 'invalid_grant';
  if (grant.redirectUri !== form.get('redirect_uri')) return 'invalid_grant';
  const verifier = form.get('code_verifier');
  if (grant.challenge !== null) {
    if (verifier === null || !VERIFIER_FORM.test(verifier)) return 'invalid_grant';
    const hash = createHash('sha256').update(verifier, 'ascii').digest('base64url');
    if (!sameText(hash, grant.challenge)) return 'invalid_grant';
  } else if (verifier !== null || options.enforcePkce) {
    return 'invalid_grant';
  }
  issueTokens(res, grant);
  return null;
}

function refreshGrant(res, form, clientId) {
  stats.token_refresh += 1;
  const token = form.get('refresh_token') ?? '';
  const grant = refreshTokens.get(token);
  if (!grant || grant.clientId !== clientId) return 'invalid_grant';
  let scope = grant.scope;
  if (form.has('scope')) {
    const asked = scopeSet(form.get('scope'));
    const granted = scopeSet(grant.scope);
    if ([...asked].some((s) => !granted.has(s))) return 'invalid_scope';
    scope = [...asked].join(' ');
  }
  refreshTokens.delete(token); // rotation: the old refresh token is revoked
  issueTokens(res, { ...grant, scope });
  return null;
}

async function token(req, res) {
  const body = await readBody(req);
  const form = new URLSearchParams(body);
  stats.last_token_client_auth = null;
  const recorded = Object.fromEntries(form);
  if ('client_secret' in recorded) recorded.client_secret = '[redacted]';
  stats.last_token = recorded;

  const refuse = (status, error, headers = {}) => {
    stats.token_refused += 1;
    sendJson(res, status, { error }, { Pragma: 'no-cache', ...headers });
  };
  const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (contentType !== 'application/x-www-form-urlencoded') return refuse(400, 'invalid_request');
  const clientId = authenticateClient(req, form);
  if (clientId === null) {
    const basic = stats.last_token_client_auth === 'client_secret_basic';
    return refuse(401, 'invalid_client', basic ? { 'WWW-Authenticate': 'Basic realm="oauth2"' } : {});
  }
  let error;
  switch (form.get('grant_type')) {
    case 'authorization_code':
      error = codeGrant(res, form, clientId);
      break;
    case 'refresh_token':
      error = refreshGrant(res, form, clientId);
      break;
    default:
      error = 'unsupported_grant_type';
  }
  if (error) refuse(400, error);
}

// --------------------------------------------------------------------------
// User details (OSM API 0.6)

function userDetails(req, res) {
  stats.userinfo += 1;
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  const grant = bearer && accessTokens.get(bearer[1]);
  if (!grant || (grant.expires !== null && grant.expires <= Date.now())) {
    stats.userinfo_refused += 1;
    if (grant) accessTokens.delete(bearer[1]);
    const challenge = bearer ? 'Bearer realm="OpenStreetMap", error="invalid_token"' : 'Bearer realm="OpenStreetMap"';
    return send(res, 401, 'Couldn\'t authenticate you\n', {
      'Content-Type': 'text/plain; charset=utf-8',
      'WWW-Authenticate': challenge,
    });
  }
  const user = USERS[grant.login];
  sendJson(res, 200, {
    version: '0.6',
    generator: 'test',
    user: {
      id: user.id,
      display_name: user.display_name,
      account_created: '2020-01-01T00:00:00Z',
      description: '',
      img: { href: 'https://example.org/a.png' },
      roles: [],
      changesets: { count: user.changesets },
    },
  });
}

// --------------------------------------------------------------------------
// Test-only endpoints

async function setUser(req, res) {
  const body = await readJsonObject(req);
  const login = body?.login;
  if (login !== DENY && !Object.hasOwn(USERS, login ?? '')) {
    return sendJson(res, 400, { error: `login must be one of ${[...Object.keys(USERS), DENY].join(', ')}` });
  }
  currentLogin = login;
  sendJson(res, 200, { ok: true, current_user: currentLogin });
}

async function setExpiresIn(req, res) {
  const body = await readJsonObject(req);
  const seconds = body?.seconds;
  if (seconds !== null && !(Number.isInteger(seconds) && seconds >= 0)) {
    return sendJson(res, 400, { error: 'seconds must be an integer >= 0, or null' });
  }
  expiresIn = seconds;
  sendJson(res, 200, { ok: true, expires_in: expiresIn });
}

function statsAnswer(res) {
  sendJson(res, 200, { ...stats, current_user: currentLogin, expires_in: expiresIn });
}

function reset(req, res) {
  req.resume();
  resetStats();
  currentLogin = DEFAULT_LOGIN;
  expiresIn = DEFAULT_EXPIRES_IN;
  sendJson(res, 200, { ok: true });
}

// --------------------------------------------------------------------------
// Server

const ROUTES = {
  '/oauth2/authorize': { GET: (req, res, url) => authorize(res, url) },
  '/oauth2/token': { POST: (req, res) => token(req, res) },
  '/api/0.6/user/details.json': { GET: (req, res) => userDetails(req, res) },
  '/__test/user': { POST: (req, res) => setUser(req, res) },
  '/__test/expires_in': { POST: (req, res) => setExpiresIn(req, res) },
  '/__test/stats': { GET: (req, res) => statsAnswer(res) },
  '/__test/reset': { POST: (req, res) => reset(req, res) },
};

async function handle(req, res) {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const methods = ROUTES[url.pathname];
  if (!methods) {
    req.resume();
    return sendText(res, 404, 'not found');
  }
  const handler = methods[req.method];
  if (!handler) {
    req.resume();
    return send(res, 405, '', { Allow: Object.keys(methods).join(', ') });
  }
  return handler(req, res, url);
}

function main() {
  const server = createServer({ maxHeaderSize: 128 * 1024 }, (req, res) => {
    res.on('finish', () => {
      const path = (req.url ?? '/').split('?')[0];
      process.stdout.write(`${req.method} ${path} ${res.statusCode}\n`);
    });
    handle(req, res).catch((err) => {
      process.stdout.write(`error: ${err.message}\n`);
      if (!res.headersSent) sendText(res, 500, 'internal error');
      else res.destroy();
    });
  });
  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  server.keepAliveTimeout = 5_000;
  server.once('error', (err) => {
    process.stderr.write(`oauth2: cannot listen on ${options.host}:${options.port}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(options.port, options.host, () => {
    const { port } = server.address();
    const host = options.host.includes(':') ? `[${options.host}]` : options.host;
    process.stdout.write(`listening on http://${host}:${port}\n`);
  });

  const shutdown = (signal) => {
    process.stdout.write(`received ${signal}, shutting down\n`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2_000).unref();
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main();
