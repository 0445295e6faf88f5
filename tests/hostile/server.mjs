#!/usr/bin/env node
/**
 * A hostile OpenID provider, for Sésame's attack tests.
 *
 * It speaks just enough OpenID Connect for a relying party to sign in
 * (discovery, JWKS, an authorization endpoint that signs a fixed test user in
 * at once, a token endpoint and a userinfo endpoint), and it misbehaves on
 * command: ID tokens signed with `none`, with HS256 keyed with its own public
 * key, with a key it does not publish, without `kid`, with any claim changed
 * or removed; userinfo with a bad signature, another `sub` or another content
 * type; keys rotated at any time. It signs its tokens itself with node:crypto
 * (ES256, P-256 keys made at start, never written to disk). Node built-ins
 * only.
 *
 * Usage:
 *   node tests/hostile/server.mjs --port PORT [--host 127.0.0.1]
 *     [--client-id sesame] [--client-secret SECRET]
 *
 * The issuer is `http://HOST:PORT`. Endpoints: /.well-known/openid-configuration,
 * /jwks, /authorize, /token, /userinfo, /revoke, which always answers 503 (a
 * revocation endpoint that is down), and /introspect, which answers 503 (an
 * introspection endpoint that is down) unless told an answer.
 *
 * Normal behaviour, until told otherwise:
 *   - /authorize checks client_id, response_type=code, a loopback http
 *     redirect_uri, state, nonce and an S256 code_challenge, and redirects
 *     straight back to redirect_uri with code, state and iss (RFC 9207);
 *   - /token accepts client_secret_post and client_secret_basic, checks the
 *     code (single use, 60 s), redirect_uri and the PKCE verifier, and answers
 *     {access_token, token_type: "Bearer", expires_in, id_token};
 *   - the ID token (ES256, kid of the current key) carries iss, sub, aud
 *     (client_id), exp (+1 h), iat, nonce and the user's claims;
 *   - /userinfo (Bearer access token) answers `application/jwt` signed like
 *     the ID token, with iss, aud, sub and the user's claims.
 *
 * Test-only control endpoint, /__control:
 *   GET  -> {"requests": {"discovery", "jwks", "authorize", "token",
 *           "userinfo", "introspect", "revoke": count}, "last_id_token": string|null, "keys": [kid]}
 *   POST with a JSON object, applied in this order:
 *     "reset": true        forget every misbehaviour, the old and extra keys,
 *                          and zero the counters (the current key stays);
 *     "rotate": true       make a new signing key; the JWKS then holds only
 *                          it (plus "extra_keys"), unless "keep_old": true;
 *     "extra_keys": N      also publish N other P-256 keys in the JWKS;
 *     "user": {claims}     the user signed in (default alice, below);
 *     "access_token_bytes": N  random bytes in the next access tokens
 *                          (default 24; up to 65536: a provider whose
 *                          access tokens are larger than a cookie);
 *     "id_token": {        how the next ID tokens are made:
 *        "header": {..},   merged into the JOSE header (null removes: "kid");
 *        "claims": {..},   merged into the claims (null removes a claim);
 *        "sign": "key" (default) | "none" | "hs256-public-key" |
 *                "foreign" (a key not published, with the header's kid) |
 *                "corrupt" (a valid signature, then one byte changed);
 *        "raw": "..."      send this exact token instead };
 *     "discovery_delay_ms": N  answer the discovery document N ms late
 *                          (0 to 10000; a provider slow to answer at start);
 *     "introspection": {..} | null  what /introspect answers for any token
 *                          (200, that JSON object), or 503 again (null);
 *     "userinfo": {        how /userinfo answers:
 *        "format": "jwt" (default) | "json",
 *        "content_type": "...", "claims": {..}, "sign": as above };
 *   Each POST replaces the "id_token" and "userinfo" settings it names.
 *
 * One line is logged per request (method, path without query, status);
 * tokens, codes and secrets are never printed. `listening on http://HOST:PORT`
 * is printed once ready (`--port 0` picks a free port). SIGTERM and SIGINT
 * stop the server cleanly (exit code 0).
 */

import {
  createHash,
  createHmac,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign as cryptoSign,
  timingSafeEqual,
} from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const USAGE =
  'usage: node tests/hostile/server.mjs --port PORT [--host 127.0.0.1] ' +
  '[--client-id ID] [--client-secret SECRET]';
const CODE_TTL = 60;
const MAX_BODY = 64 * 1024;

const DEFAULT_USER = {
  sub: 'alice-7f3a',
  email: 'alice.martin@numerique.gouv.fr',
  given_name: 'Alice',
  usual_name: 'Martin',
  siret: '13002526500013',
  idp_id: 'fia1v2',
};

function fail(message) {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

const { values: args } = (() => {
  try {
    return parseArgs({
      options: {
        port: { type: 'string' },
        host: { type: 'string', default: '127.0.0.1' },
        'client-id': { type: 'string', default: 'sesame' },
        'client-secret': { type: 'string', default: 'sesame-demo-secret-please-change' },
      },
    });
  } catch (e) {
    return fail(e.message);
  }
})();
if (args.port === undefined || !/^\d+$/.test(args.port)) fail('--port is required');

const CLIENT_ID = args['client-id'];
const CLIENT_SECRET = args['client-secret'];

// --------------------------------------------------------------------------
// Keys and JWS

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

let keyCounter = 0;
function newKey(prefix = 'hostile') {
  keyCounter += 1;
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = `${prefix}-${keyCounter}-${randomBytes(4).toString('hex')}`;
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'ES256' };
  return { kid, privateKey, publicKey, jwk };
}

const keys = {
  current: newKey(),
  old: [], // published with the current key after a rotation with keep_old
  extra: [], // published, never used to sign
  foreign: newKey('foreign'), // never published
};

function publishedKeys() {
  return [keys.current, ...keys.old, ...keys.extra];
}

function jws(header, claims, how = 'key') {
  const head = { ...header };
  for (const [k, v] of Object.entries(head)) if (v === null) delete head[k];
  const input = `${b64url(JSON.stringify(head))}.${b64url(JSON.stringify(claims))}`;
  switch (how) {
    case 'none':
      return `${input}.`;
    case 'hs256-public-key': {
      const pem = keys.current.publicKey.export({ format: 'pem', type: 'spki' });
      return `${input}.${b64url(createHmac('sha256', pem).update(input).digest())}`;
    }
    case 'foreign':
    case 'key':
    case 'corrupt': {
      const key = how === 'foreign' ? keys.foreign : keys.current;
      const sig = cryptoSign('sha256', Buffer.from(input), {
        key: key.privateKey,
        dsaEncoding: 'ieee-p1363',
      });
      if (how === 'corrupt') sig[sig.length - 1] ^= 0x01;
      return `${input}.${b64url(sig)}`;
    }
    default:
      throw new Error(`unknown signing mode ${how}`);
  }
}

/** The JOSE header for a signing mode, with the test's changes merged in. */
function headerFor(how, changes = {}) {
  const alg = { none: 'none', 'hs256-public-key': 'HS256' }[how] ?? 'ES256';
  return { alg, typ: 'JWT', kid: keys.current.kid, ...changes };
}

function withChanges(base, changes = {}) {
  const out = { ...base, ...changes };
  for (const [k, v] of Object.entries(out)) if (v === null) delete out[k];
  return out;
}

// --------------------------------------------------------------------------
// Behaviour set by the tests

let behaviour;
let counters;
let lastIdToken = null;

function resetBehaviour() {
  behaviour = {
    user: { ...DEFAULT_USER },
    id_token: {},
    userinfo: {},
    access_token_bytes: 24,
    discovery_delay_ms: 0,
    introspection: null,
  };
  counters = {
    discovery: 0, jwks: 0, authorize: 0, token: 0, userinfo: 0, introspect: 0, revoke: 0,
  };
}
resetBehaviour();

function control(body) {
  if (body.reset) {
    resetBehaviour();
    keys.old = [];
    keys.extra = [];
  }
  if (body.rotate) {
    const previous = keys.current;
    keys.current = newKey();
    keys.old = body.keep_old ? [previous, ...keys.old] : [];
  }
  if (body.extra_keys !== undefined) {
    const n = Number(body.extra_keys);
    if (!Number.isInteger(n) || n < 0 || n > 20) throw new Error('extra_keys: 0 to 20');
    keys.extra = Array.from({ length: n }, () => newKey('extra'));
  }
  if (body.user !== undefined) behaviour.user = { ...body.user };
  if (body.access_token_bytes !== undefined) {
    const n = Number(body.access_token_bytes);
    if (!Number.isInteger(n) || n < 16 || n > 65536) throw new Error('access_token_bytes: 16 to 65536');
    behaviour.access_token_bytes = n;
  }
  if (body.discovery_delay_ms !== undefined) {
    const n = Number(body.discovery_delay_ms);
    if (!Number.isInteger(n) || n < 0 || n > 10000) throw new Error('discovery_delay_ms: 0 to 10000');
    behaviour.discovery_delay_ms = n;
  }
  if (body.introspection !== undefined) {
    if (body.introspection !== null && typeof body.introspection !== 'object') {
      throw new Error('introspection: an object, or null');
    }
    behaviour.introspection = body.introspection;
  }
  if (body.id_token !== undefined) behaviour.id_token = { ...body.id_token };
  if (body.userinfo !== undefined) behaviour.userinfo = { ...body.userinfo };
}

// --------------------------------------------------------------------------
// Codes and access tokens issued

const codes = new Map(); // code -> {nonce, redirect_uri, challenge, expires}
const accessTokens = new Map(); // token -> user claims

function issueIdToken(nonce) {
  const spec = behaviour.id_token;
  if (typeof spec.raw === 'string') return spec.raw;
  const t = now();
  const claims = withChanges(
    { iss: issuer, aud: CLIENT_ID, exp: t + 3600, iat: t, nonce, ...behaviour.user },
    spec.claims,
  );
  const how = spec.sign ?? 'key';
  return jws(headerFor(how, spec.header), claims, how);
}

// --------------------------------------------------------------------------
// HTTP

let issuer = '';

function send(res, status, body, headers = {}) {
  const data = Buffer.isBuffer(body) ? body : Buffer.from(body);
  res.writeHead(status, { 'Content-Length': data.length, 'Cache-Control': 'no-store', ...headers });
  res.end(data);
}

function sendJson(res, status, value) {
  send(res, status, JSON.stringify(value), { 'Content-Type': 'application/json' });
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

function sameText(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

function isLoopbackHttp(uri) {
  try {
    const u = new URL(uri);
    return u.protocol === 'http:' && u.hostname === '127.0.0.1';
  } catch {
    return false;
  }
}

function discovery(res) {
  counters.discovery += 1;
  sendJson(res, 200, {
    issuer,
    authorization_endpoint: `${issuer}/authorize`,
    token_endpoint: `${issuer}/token`,
    userinfo_endpoint: `${issuer}/userinfo`,
    jwks_uri: `${issuer}/jwks`,
    revocation_endpoint: `${issuer}/revoke`,
    response_types_supported: ['code'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['ES256'],
    userinfo_signing_alg_values_supported: ['ES256'],
    token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
    code_challenge_methods_supported: ['S256'],
    authorization_response_iss_parameter_supported: true,
  });
}

function jwks(res) {
  counters.jwks += 1;
  sendJson(res, 200, { keys: publishedKeys().map((k) => k.jwk) });
}

function authorize(res, url) {
  counters.authorize += 1;
  const q = url.searchParams;
  const redirectUri = q.get('redirect_uri') ?? '';
  if (!isLoopbackHttp(redirectUri)) return send(res, 400, 'bad redirect_uri');
  const problem =
    (q.get('client_id') !== CLIENT_ID && 'unknown client_id') ||
    (q.get('response_type') !== 'code' && 'response_type must be code') ||
    (!q.get('state') && 'state is required') ||
    (!q.get('nonce') && 'nonce is required') ||
    (q.get('code_challenge_method') !== 'S256' && 'PKCE S256 is required') ||
    (!q.get('code_challenge') && 'PKCE S256 is required');
  const back = new URL(redirectUri);
  if (q.get('state')) back.searchParams.set('state', q.get('state'));
  back.searchParams.set('iss', issuer);
  if (problem) {
    back.searchParams.set('error', 'invalid_request');
    back.searchParams.set('error_description', problem);
  } else {
    const code = randomBytes(24).toString('base64url');
    codes.set(code, {
      nonce: q.get('nonce'),
      redirectUri,
      challenge: q.get('code_challenge'),
      expires: now() + CODE_TTL,
    });
    back.searchParams.set('code', code);
  }
  send(res, 302, '', { Location: back.toString() });
}

function clientAuthenticated(req, form) {
  const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
  if (basic) {
    const [id, secret] = Buffer.from(basic[1], 'base64').toString('utf8').split(':');
    return sameText(decodeURIComponent(id ?? ''), CLIENT_ID) &&
      sameText(decodeURIComponent(secret ?? ''), CLIENT_SECRET);
  }
  return sameText(form.get('client_id') ?? '', CLIENT_ID) &&
    sameText(form.get('client_secret') ?? '', CLIENT_SECRET);
}

async function token(req, res) {
  counters.token += 1;
  const form = new URLSearchParams(await readBody(req));
  if (!clientAuthenticated(req, form)) return sendJson(res, 401, { error: 'invalid_client' });
  if (form.get('grant_type') !== 'authorization_code') {
    return sendJson(res, 400, { error: 'unsupported_grant_type' });
  }
  const code = form.get('code') ?? '';
  const grant = codes.get(code);
  codes.delete(code); // single use, even when the request is refused
  const verifier = form.get('code_verifier') ?? '';
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  if (
    !grant ||
    grant.expires < now() ||
    grant.redirectUri !== form.get('redirect_uri') ||
    !sameText(challenge, grant.challenge)
  ) {
    return sendJson(res, 400, { error: 'invalid_grant' });
  }
  const idToken = issueIdToken(grant.nonce);
  lastIdToken = idToken;
  const accessToken = randomBytes(behaviour.access_token_bytes).toString('base64url');
  accessTokens.set(accessToken, { ...behaviour.user });
  sendJson(res, 200, {
    access_token: accessToken,
    token_type: 'Bearer',
    expires_in: 3600,
    id_token: idToken,
  });
}

function userinfo(req, res) {
  counters.userinfo += 1;
  const bearer = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '');
  const user = bearer && accessTokens.get(bearer[1]);
  if (!user) {
    return send(res, 401, '', { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
  }
  const spec = behaviour.userinfo;
  const claims = withChanges(user, spec.claims);
  if ((spec.format ?? 'jwt') === 'json') {
    return send(res, 200, JSON.stringify(claims), {
      'Content-Type': spec.content_type ?? 'application/json',
    });
  }
  const how = spec.sign ?? 'key';
  const body = jws(headerFor(how), { iss: issuer, aud: CLIENT_ID, ...claims }, how);
  send(res, 200, body, { 'Content-Type': spec.content_type ?? 'application/jwt' });
}

async function controlEndpoint(req, res) {
  if (req.method === 'GET') {
    return sendJson(res, 200, {
      requests: counters,
      last_id_token: lastIdToken,
      keys: publishedKeys().map((k) => k.kid),
      current_kid: keys.current.kid,
    });
  }
  if (req.method !== 'POST') return send(res, 405, '');
  let body;
  try {
    body = JSON.parse(await readBody(req));
  } catch {
    return sendJson(res, 400, { error: 'not JSON' });
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return sendJson(res, 400, { error: 'not a JSON object' });
  }
  try {
    control(body);
  } catch (e) {
    return sendJson(res, 400, { error: e.message });
  }
  sendJson(res, 200, { ok: true, current_kid: keys.current.kid });
}

async function handle(req, res) {
  const url = new URL(req.url, issuer);
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /.well-known/openid-configuration':
      if (behaviour.discovery_delay_ms > 0) {
        await new Promise((resolve) => { setTimeout(resolve, behaviour.discovery_delay_ms); });
      }
      return discovery(res);
    case 'GET /jwks':
      return jwks(res);
    case 'GET /authorize':
      return authorize(res, url);
    case 'POST /token':
      return token(req, res);
    case 'GET /userinfo':
      return userinfo(req, res);
    case 'POST /revoke':
      // A revocation endpoint that is down (RFC 7009 §2.2.1: the client
      // may retry later; Sésame's sign-out must not wait for it).
      counters.revoke += 1;
      return sendJson(res, 503, { error: 'temporarily_unavailable' });
    case 'POST /introspect':
      // An introspection endpoint that is down (not in the discovery
      // document: a configuration names it).
      counters.introspect += 1;
      if (behaviour.introspection) return sendJson(res, 200, behaviour.introspection);
      return sendJson(res, 503, { error: 'temporarily_unavailable' });
    default:
      if (url.pathname === '/__control') return controlEndpoint(req, res);
      return send(res, 404, 'not found');
  }
}

// Large enough for the access tokens of "access_token_bytes" in a
// userinfo request's Authorization header (Node's default is 16 KiB).
const server = createServer({ maxHeaderSize: 128 * 1024 }, (req, res) => {
  res.on('finish', () => {
    const path = (req.url ?? '').split('?')[0];
    process.stdout.write(`${req.method} ${path} ${res.statusCode}\n`);
  });
  handle(req, res).catch((e) => {
    process.stdout.write(`error: ${e.message}\n`);
    if (!res.headersSent) send(res, 500, 'internal error');
  });
});

server.listen(Number(args.port), args.host, () => {
  const { port } = server.address();
  issuer = `http://${args.host}:${port}`;
  process.stdout.write(`listening on ${issuer}\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
