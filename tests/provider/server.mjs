#!/usr/bin/env node
/**
 * Sésame's local OpenID provider, for the tests and the demo.
 *
 * A small OpenID Connect provider built on the npm package `oidc-provider`,
 * configured to behave like ProConnect (the French public-sector identity
 * federation) as far as a relying party such as Sésame can tell:
 *
 *   - authorization code flow only (response_type=code), PKCE S256 accepted;
 *   - one confidential client, authenticated with client_secret_post (default)
 *     or client_secret_basic;
 *   - ID token and userinfo both signed (ES256 by default, RS256 or ES384 on request);
 *     the userinfo endpoint answers `application/jwt`;
 *   - scopes `openid email given_name usual_name uid siret idp_id`: the ID token
 *     is thin (sub, nonce, acr, auth_time, ...) and the identity claims come
 *     from userinfo;
 *   - RP-initiated logout (end_session_endpoint);
 *   - a JWKS holding one EC P-256 signing key, one RSA signing key and one RSA
 *     encryption key (`"use":"enc"`), so clients face a mixed key set.
 *
 * There is no password: the login page lists fixed test users (users.mjs), one
 * button each, and consent is granted automatically.
 *
 * `--proconnect` makes it stricter, like ProConnect's documented behaviour:
 * client_secret_post only, a closed list of authorization parameters (state
 * and nonce of 32 characters or more), the eIDAS acr values (the login page
 * can pick a lower one than requested, to test refusals), the `claims`
 * parameter (amr on request), and a logout that requires id_token_hint, state
 * and post_logout_redirect_uri and redirects without a confirmation page.
 * `--issuer-path /api/v2` mounts everything under a path, as ProConnect's
 * issuer `https://<host>/api/v2` is.
 *
 * `--api-resources` adds the authorization server side of API protection:
 * two resource servers (resource indicators, RFC 8707) accepting the scopes
 * `api:read api:write`: `https://api.example.fr`, whose access tokens are JWTs
 * (RFC 9068, ES256), and `https://opaque.example.fr`, whose access tokens are
 * opaque; token introspection (RFC 7662) for the client, answered as JSON or,
 * with `Accept: application/token-introspection+jwt`, as a signed JWT
 * (RFC 9701), encrypted to the client's own key with --introspection-encryption.
 * Without the flag none of this exists (sign-ins are unchanged either way: a
 * token request without `resource` gets the usual access token for userinfo).
 *
 * Usage:
 *   node tests/provider/server.mjs --port 9000 [--host 127.0.0.1]
 *     [--client-id sesame] [--client-secret SECRET]
 *     [--redirect-uri URL]...              (repeatable)
 *     [--post-logout-redirect-uri URL]...  (repeatable)
 *     [--alg ES256|RS256|ES384] [--auth-method client_secret_post|client_secret_basic]
 *     [--keys-file PATH] [--issuer URL] [--issuer-path /PATH] [--proconnect]
 *     [--logout-without-confirmation]
 *     [--access-token-ttl SECONDS] [--refresh-tokens]
 *     [--api-resources [--introspection-signed-alg ES256|RS256]
 *       [--introspection-encryption RSA-OAEP-256|ECDH-ES --client-jwks PATH]]
 *
 * The issuer is `http://HOST:PORT` followed by --issuer-path (no trailing
 * slash) unless --issuer is given. `--logout-without-confirmation` logs out
 * at once, as ProConnect does (which --proconnect implies), instead of
 * showing oidc-provider's confirmation page. `--port 0` picks a free port; the line `listening on http://HOST:PORT`
 * is printed to stdout once the provider is ready. One line is logged per
 * request (method, path without query, status, duration); secrets and tokens
 * are never printed. SIGTERM and SIGINT stop the server cleanly (exit code 0).
 *
 * Endpoints (oidc-provider's defaults, under --issuer-path if given): discovery
 * /.well-known/openid-configuration, /auth, /token, /me (userinfo), /jwks,
 * /session/end (logout), /token/revocation, and with --api-resources
 * /token/introspection; and this file's /interaction/:uid pages. Test-only
 * endpoints: /__test/last-authorize, /__test/last-end-session, /__test/stats,
 * /__test/reset (see the README).
 *
 * See tests/provider/README.md for a walk-through of the flow.
 */

import { randomBytes, generateKeyPair, createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';

import { USERS, SCOPE_CLAIMS, userBySub } from './users.mjs';

const generateKeyPairAsync = promisify(generateKeyPair);

const DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  clientId: 'sesame',
  clientSecret: 'sesame-demo-secret-please-change',
  redirectUri: 'http://127.0.0.1:10000/oauth2/callback',
  alg: 'ES256',
  authMethod: 'client_secret_post',
});

const TTL = Object.freeze({
  AuthorizationCode: 60,
  AccessToken: 3600,
  IdToken: 3600,
  RefreshToken: 12 * 3600,
  Session: 12 * 3600,
  Grant: 12 * 3600,
  Interaction: 3600,
  ClientCredentials: 600,
  DeviceCode: 600,
  BackchannelAuthenticationRequest: 600,
  PreAuthorizedCode: 600,
});

// ProConnect's authentication context class: the only one in the default
// mode, the default one in ProConnect mode.
const ACR = 'eidas1';
// ProConnect's supported acr values (eIDAS levels), in ProConnect mode.
const PROCONNECT_ACR_VALUES = Object.freeze(['eidas0', 'eidas0-mfa', 'eidas1', 'eidas1-mfa', 'eidas2', 'eidas3']);

// ProConnect mode: the only parameters accepted by the authorization endpoint.
const PROCONNECT_AUTH_PARAMS = new Set([
  'response_type', 'client_id', 'redirect_uri', 'scope', 'state', 'nonce', 'claims', 'prompt',
  'idp_hint', 'login_hint', 'siret_hint', 'acr_values', 'code_challenge', 'code_challenge_method',
]);
const PROCONNECT_PROMPTS = new Set(['login', 'consent', 'none']);
const PROCONNECT_MIN_STATE_NONCE = 32;
const PROCONNECT_END_SESSION_PARAMS = ['id_token_hint', 'state', 'post_logout_redirect_uri'];

// --api-resources: the resource servers (resource indicator → access token
// format) and the scopes each of them accepts.
const API_RESOURCES = Object.freeze({
  'https://api.example.fr': 'jwt',
  'https://opaque.example.fr': 'opaque',
});
const API_SCOPES = Object.freeze(['api:read', 'api:write']);
// Signature of the JWT access tokens (the provider's EC key).
const API_JWT_ALG = 'ES256';
// Introspection response formats the client may register (--introspection-*).
const INTROSPECTION_SIGNING_ALGS = Object.freeze(['ES256', 'RS256']);
const INTROSPECTION_ENCRYPTION_ALGS = Object.freeze(['RSA-OAEP-256', 'ECDH-ES']);
const INTROSPECTION_ENCRYPTION_ENC = 'A256GCM';

const USAGE = `usage: node tests/provider/server.mjs --port PORT [--host 127.0.0.1]
  [--client-id ${DEFAULTS.clientId}] [--client-secret SECRET]
  [--redirect-uri URL]... [--post-logout-redirect-uri URL]...
  [--alg ES256|RS256|ES384] [--auth-method client_secret_post|client_secret_basic]
  [--keys-file PATH] [--issuer URL] [--issuer-path /PATH] [--proconnect]
  [--logout-without-confirmation]
  [--access-token-ttl SECONDS] [--refresh-tokens]
  [--api-resources [--introspection-signed-alg ES256|RS256]
    [--introspection-encryption RSA-OAEP-256|ECDH-ES --client-jwks PATH]]`;

// ---------------------------------------------------------------------------
// Command line

function fail(message) {
  process.stderr.write(`provider: ${message}\n${USAGE}\n`);
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
        host: { type: 'string', default: DEFAULTS.host },
        issuer: { type: 'string' },
        'client-id': { type: 'string', default: DEFAULTS.clientId },
        'client-secret': { type: 'string', default: DEFAULTS.clientSecret },
        'redirect-uri': { type: 'string', multiple: true },
        'post-logout-redirect-uri': { type: 'string', multiple: true },
        alg: { type: 'string', default: DEFAULTS.alg },
        'auth-method': { type: 'string', default: DEFAULTS.authMethod },
        'keys-file': { type: 'string' },
        'issuer-path': { type: 'string', default: '' },
        proconnect: { type: 'boolean', default: false },
        'logout-without-confirmation': { type: 'boolean', default: false },
        'access-token-ttl': { type: 'string', default: String(TTL.AccessToken) },
        'refresh-tokens': { type: 'boolean', default: false },
        'api-resources': { type: 'boolean', default: false },
        'introspection-signed-alg': { type: 'string' },
        'introspection-encryption': { type: 'string' },
        'client-jwks': { type: 'string' },
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
  if (!/^\d{1,5}$/.test(values.port) || Number(values.port) > 65535) {
    fail(`invalid --port ${JSON.stringify(values.port)}`);
  }
  const alg = values.alg.toUpperCase();
  if (!['ES256', 'RS256', 'ES384'].includes(alg)) fail(`--alg must be ES256, RS256 or ES384, not ${values.alg}`);
  const authMethod = values['auth-method'];
  if (authMethod !== 'client_secret_post' && authMethod !== 'client_secret_basic') {
    fail(`--auth-method must be client_secret_post or client_secret_basic, not ${authMethod}`);
  }
  if (!values['client-id']) fail('--client-id must not be empty');
  if (!values['client-secret']) fail('--client-secret must not be empty');

  const checkUrl = (flag, value) => {
    let url;
    try {
      url = new URL(value);
    } catch {
      fail(`${flag}: not an absolute URL: ${value}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(`${flag}: not an http(s) URL: ${value}`);
    if (url.hash) fail(`${flag}: must not have a fragment: ${value}`);
    return value;
  };
  const redirectUris = (values['redirect-uri'] ?? [DEFAULTS.redirectUri])
    .map((v) => checkUrl('--redirect-uri', v));
  const postLogoutRedirectUris = (values['post-logout-redirect-uri'] ?? [])
    .map((v) => checkUrl('--post-logout-redirect-uri', v));
  const issuerPath = values['issuer-path'];
  if (issuerPath !== '' && (!/^(\/[A-Za-z0-9._~-]+)+$/.test(issuerPath) || /\/\.\.?(\/|$)/.test(issuerPath))) {
    fail(`--issuer-path must be empty or a path like /api/v2 (leading slash, no trailing slash, no query): ${issuerPath}`);
  }
  let issuer;
  if (values.issuer !== undefined) {
    checkUrl('--issuer', values.issuer);
    if (values.issuer.endsWith('/') || values.issuer.includes('?')) {
      fail('--issuer must have no trailing slash and no query');
    }
    if (issuerPath && new URL(values.issuer).pathname !== issuerPath) {
      fail(`--issuer ${values.issuer}: its path must be the --issuer-path ${issuerPath}`);
    }
    issuer = values.issuer;
  }
  const accessTokenTtl = Number(values['access-token-ttl']);
  if (!Number.isInteger(accessTokenTtl) || accessTokenTtl < 1 || accessTokenTtl > 86400) {
    fail(`--access-token-ttl must be a number of seconds from 1 to 86400, not ${values['access-token-ttl']}`);
  }
  const api = parseApiOptions(values);
  const proconnect = values.proconnect;
  if (proconnect && authMethod !== 'client_secret_post') {
    process.stderr.write(`provider: --proconnect: the client uses client_secret_post (ProConnect's only method); --auth-method ${authMethod} is ignored\n`);
  }

  return {
    port: Number(values.port),
    host: values.host,
    issuer,
    clientId: values['client-id'],
    clientSecret: values['client-secret'],
    redirectUris,
    postLogoutRedirectUris,
    alg,
    authMethod: proconnect ? 'client_secret_post' : authMethod,
    keysFile: values['keys-file'] ? resolve(values['keys-file']) : undefined,
    issuerPath,
    proconnect,
    logoutAtOnce: proconnect || values['logout-without-confirmation'],
    acrValues: proconnect ? [...PROCONNECT_ACR_VALUES] : [ACR],
    accessTokenTtl,
    refreshTokens: values['refresh-tokens'],
    ...api,
  };
}

/**
 * --api-resources and the client's introspection response format:
 * { apiResources, introspectionSignedAlg, introspectionEncryption, clientJwks }.
 */
function parseApiOptions(values) {
  const apiResources = values['api-resources'];
  const signedAlg = values['introspection-signed-alg'];
  const encryption = values['introspection-encryption'];
  const jwksPath = values['client-jwks'];
  for (const [flag, value] of [['--introspection-signed-alg', signedAlg],
    ['--introspection-encryption', encryption], ['--client-jwks', jwksPath]]) {
    if (value !== undefined && !apiResources) fail(`${flag} needs --api-resources (introspection exists only with it)`);
  }
  let introspectionSignedAlg;
  if (signedAlg !== undefined) {
    introspectionSignedAlg = signedAlg.toUpperCase();
    if (!INTROSPECTION_SIGNING_ALGS.includes(introspectionSignedAlg)) {
      fail(`--introspection-signed-alg must be ${INTROSPECTION_SIGNING_ALGS.join(' or ')}, not ${signedAlg}`);
    }
  }
  let introspectionEncryption;
  if (encryption !== undefined) {
    introspectionEncryption = INTROSPECTION_ENCRYPTION_ALGS.find((alg) => alg === encryption.toUpperCase());
    if (!introspectionEncryption) {
      fail(`--introspection-encryption must be ${INTROSPECTION_ENCRYPTION_ALGS.join(' or ')}, not ${encryption}`);
    }
    if (jwksPath === undefined) {
      fail(`--introspection-encryption ${introspectionEncryption} needs --client-jwks PATH (the client's public keys, to encrypt to)`);
    }
  }
  let clientJwks;
  if (jwksPath !== undefined) {
    if (!introspectionEncryption) fail('--client-jwks is only used with --introspection-encryption');
    clientJwks = readClientJwks(resolve(jwksPath), introspectionEncryption);
  }
  return { apiResources, introspectionSignedAlg, introspectionEncryption, clientJwks };
}

// Private members of RSA, EC and OKP JWKs: never in the client's JWKS.
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/**
 * The client's public keys ({"keys": [...]}, read from PATH), checked: public
 * RSA, EC or OKP keys only, and at least one to encrypt to with `alg` (an RSA
 * key for RSA-OAEP-256, an EC key for ECDH-ES).
 */
function readClientJwks(path, alg) {
  let parsed;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    fail(`--client-jwks: cannot read ${path}: ${err.message}`);
  }
  if (!Array.isArray(parsed?.keys) || parsed.keys.length === 0) {
    fail(`--client-jwks ${path}: expected {"keys": [...]} with at least one key`);
  }
  parsed.keys.forEach((k, i) => {
    if (typeof k !== 'object' || k === null || !['RSA', 'EC', 'OKP'].includes(k.kty)) {
      fail(`--client-jwks ${path}: keys[${i}] is not an RSA, EC or OKP JWK`);
    }
    const secret = PRIVATE_JWK_MEMBERS.filter((m) => m in k);
    if (secret.length) {
      fail(`--client-jwks ${path}: keys[${i}] holds private members (${secret.join(', ')}): give the client's PUBLIC keys only`);
    }
  });
  const kty = alg === 'ECDH-ES' ? 'EC' : 'RSA';
  const usable = parsed.keys.some((k) => k.kty === kty
    && (k.use === undefined || k.use === 'enc') && (k.alg === undefined || k.alg === alg));
  if (!usable) {
    fail(`--client-jwks ${path}: no key to encrypt to with ${alg} (needs an ${kty} key with "use":"enc" or no use, and "alg":"${alg}" or no alg)`);
  }
  return { keys: parsed.keys };
}

// ---------------------------------------------------------------------------
// Keys

/** RFC 7638 JWK thumbprint (SHA-256, base64url). */
function thumbprint(jwk) {
  let members;
  if (jwk.kty === 'EC') members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  else if (jwk.kty === 'RSA') members = { e: jwk.e, kty: jwk.kty, n: jwk.n };
  else throw new Error(`unsupported key type ${jwk.kty}`);
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

/** The signing key of an EC curve for `alg`. */
function ecSigningRole(curve, alg) {
  return {
    name: `EC ${curve} signing key (${alg})`,
    matches: (k) => k.kty === 'EC' && k.crv === curve && k.use !== 'enc' && (k.alg ?? alg) === alg,
    async generate() {
      const { privateKey } = await generateKeyPairAsync('ec', { namedCurve: curve });
      const jwk = privateKey.export({ format: 'jwk' });
      return { ...jwk, use: 'sig', alg, kid: `${alg.toLowerCase()}-${thumbprint(jwk).slice(0, 16)}` };
    },
  };
}

const KEY_ROLES = [
  ecSigningRole('P-256', 'ES256'),
  // Only for --alg ES384: the other JWKS stay as they were.
  { ...ecSigningRole('P-384', 'ES384'), onlyFor: 'ES384' },
  {
    name: 'RSA signing key (RS256)',
    matches: (k) => k.kty === 'RSA' && k.use !== 'enc' && (k.alg ?? 'RS256') === 'RS256',
    async generate() {
      const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 });
      const jwk = privateKey.export({ format: 'jwk' });
      return { ...jwk, use: 'sig', alg: 'RS256', kid: `rs256-${thumbprint(jwk).slice(0, 16)}` };
    },
  },
  {
    name: 'encryption key (use "enc")',
    matches: (k) => k.use === 'enc',
    async generate() {
      const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 });
      const jwk = privateKey.export({ format: 'jwk' });
      return { ...jwk, use: 'enc', alg: 'RSA-OAEP-256', kid: `enc-${thumbprint(jwk).slice(0, 16)}` };
    },
  },
];

function isPrivateJwk(k) {
  if (k?.kty === 'EC') return ['crv', 'x', 'y', 'd'].every((p) => typeof k[p] === 'string');
  if (k?.kty === 'RSA') return ['n', 'e', 'd', 'p', 'q', 'dp', 'dq', 'qi'].every((p) => typeof k[p] === 'string');
  return false;
}

/**
 * Returns the private JWKs to serve. With a keys file: loads it when present,
 * adds whatever key is missing and writes it back (mode 0600); so a restarted
 * provider serves the same JWKS.
 */
async function loadOrGenerateKeys(keysFile, alg) {
  let keys = [];
  if (keysFile && existsSync(keysFile)) {
    let parsed;
    try {
      parsed = JSON.parse(readFileSync(keysFile, 'utf8'));
    } catch (err) {
      throw new Error(`cannot read keys file ${keysFile}: ${err.message}`);
    }
    if (!Array.isArray(parsed?.keys)) throw new Error(`keys file ${keysFile}: expected {"keys": [...]}`);
    keys = parsed.keys.map((k, i) => {
      if (!isPrivateJwk(k)) throw new Error(`keys file ${keysFile}: keys[${i}] is not a private EC or RSA JWK`);
      return { ...k, kid: k.kid ?? thumbprint(k) };
    });
  }
  const missing = KEY_ROLES.filter((role) => (!role.onlyFor || role.onlyFor === alg) && !keys.some(role.matches));
  if (missing.length) {
    keys.push(...await Promise.all(missing.map((role) => role.generate())));
    if (keysFile) {
      mkdirSync(dirname(keysFile), { recursive: true });
      const tmp = `${keysFile}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify({ keys }, null, 2)}\n`, { mode: 0o600 });
      renameSync(tmp, keysFile);
    }
  }
  return keys;
}

// ---------------------------------------------------------------------------
// Storage: a plain in-memory adapter (no size limit, entries expire).

// The models that revoking a grant removes (revokeByGrantId), as in
// oidc-provider's own memory adapter: its tokens and codes. Not an
// Interaction, which also records the grantId of the session it started in:
// when someone else signs in over an open session (prompt=login),
// oidc-provider ends that session first (revoking its grants) and then
// resumes the interaction, which must still exist.
const GRANTABLE = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode',
]);

function createMemoryAdapter() {
  const store = new Map(); // "Model:id" -> { payload, expiresAt }
  const byGrant = new Map(); // grantId -> Set of "Model:id"
  const byUid = new Map(); // session uid -> session id
  const byUserCode = new Map(); // user code -> device code id

  const now = () => Date.now();
  const get = (key) => {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  };

  const sweeper = setInterval(() => {
    const t = now();
    for (const [key, entry] of store) {
      if (entry.expiresAt !== undefined && entry.expiresAt <= t) store.delete(key);
    }
    for (const [grantId, keys] of byGrant) {
      for (const key of keys) if (!store.has(key)) keys.delete(key);
      if (!keys.size) byGrant.delete(grantId);
    }
    for (const [uid, id] of byUid) if (!store.has(`Session:${id}`)) byUid.delete(uid);
    for (const [code, id] of byUserCode) if (!store.has(`DeviceCode:${id}`)) byUserCode.delete(code);
  }, 60_000);
  sweeper.unref();

  return class MemoryAdapter {
    constructor(model) {
      this.model = model;
    }

    key(id) {
      return `${this.model}:${id}`;
    }

    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      store.set(key, {
        payload: structuredClone(payload),
        expiresAt: typeof expiresIn === 'number' ? now() + expiresIn * 1000 : undefined,
      });
      if (payload.grantId && GRANTABLE.has(this.model)) {
        if (!byGrant.has(payload.grantId)) byGrant.set(payload.grantId, new Set());
        byGrant.get(payload.grantId).add(key);
      }
      if (payload.uid && this.model === 'Session') byUid.set(payload.uid, id);
      if (payload.userCode) byUserCode.set(payload.userCode, id);
    }

    async find(id) {
      const payload = get(this.key(id));
      return payload ? structuredClone(payload) : undefined;
    }

    async findByUid(uid) {
      const id = byUid.get(uid);
      return id === undefined ? undefined : this.find(id);
    }

    async findByUserCode(userCode) {
      const id = byUserCode.get(userCode);
      return id === undefined ? undefined : this.find(id);
    }

    async consume(id) {
      const entry = store.get(this.key(id));
      if (entry) entry.payload.consumed = Math.floor(now() / 1000);
    }

    async destroy(id) {
      store.delete(this.key(id));
    }

    async revokeByGrantId(grantId) {
      for (const key of byGrant.get(grantId) ?? []) store.delete(key);
      byGrant.delete(grantId);
    }
  };
}

// ---------------------------------------------------------------------------
// HTML pages

const escapeHtml = (value) => String(value)
  .replaceAll('&', '&amp;')
  .replaceAll('<', '&lt;')
  .replaceAll('>', '&gt;')
  .replaceAll('"', '&quot;')
  .replaceAll("'", '&#39;');

const STYLE = `
  :root { color-scheme: light dark; }
  body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }
  h1 { font-size: 1.5rem; }
  ul.users { list-style: none; padding: 0; }
  ul.users li { border: 1px solid #8886; border-radius: .5rem; padding: .75rem 1rem; margin: .75rem 0; }
  button { font: inherit; padding: .4rem .9rem; border-radius: .35rem; border: 1px solid #000091; background: #000091; color: #fff; cursor: pointer; }
  button.secondary { background: transparent; color: inherit; border-color: #8888; }
  button:focus-visible { outline: 3px solid #ff9940; outline-offset: 2px; }
  label { margin-right: .5rem; }
  select { font: inherit; margin: 0 .75rem .5rem 0; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 0 1rem; margin: .5rem 0 0; }
  dt { font-weight: 600; }
  dd { margin: 0; font-family: ui-monospace, monospace; }
  .muted { opacity: .75; font-size: .9rem; }
`;

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

/**
 * The "Choose a test user" page. `action` is the interaction's path (with the
 * issuer path). With `acr` ({ supported, requested }), each user's form gets a
 * `<select name="acr">` ("as requested" by default), to sign in with another
 * authentication level than the one requested.
 */
function loginPage(action, clientName, scope, acr) {
  const acrSelect = (login) => {
    if (!acr) return '';
    const options = [`<option value="" selected>as requested (${escapeHtml(acr.requested)})</option>`,
      ...acr.supported.map((v) => `<option value="${escapeHtml(v)}">${escapeHtml(v)}</option>`)];
    return `
      <label for="acr-${escapeHtml(login)}">Authentication level (acr)</label>
      <select name="acr" id="acr-${escapeHtml(login)}">${options.join('')}</select>`;
  };
  const items = Object.entries(USERS).map(([login, user]) => `  <li>
    <form method="post" action="${escapeHtml(action)}/login">
      <input type="hidden" name="user" value="${escapeHtml(login)}">${acrSelect(login)}
      <button type="submit" id="login-${escapeHtml(login)}">Sign in as ${escapeHtml(user.email)}</button>
    </form>
    <dl>
      <dt>Name</dt><dd>${escapeHtml(`${user.given_name} ${user.usual_name}`)}</dd>
      <dt>Email</dt><dd>${escapeHtml(user.email)}</dd>
      <dt>SIRET</dt><dd>${escapeHtml(user.siret)}</dd>
      <dt>Identity provider</dt><dd>${escapeHtml(user.idp_id)}</dd>
    </dl>
  </li>`).join('\n');
  return page('Choose a test user', `<h1>Choose a test user</h1>
<p>Test OpenID provider (no password). Signing in to <strong>${escapeHtml(clientName)}</strong>; requested scopes: <code>${escapeHtml(scope)}</code>.</p>
<ul class="users" aria-label="Test users">
${items}
</ul>
<form method="post" action="${escapeHtml(action)}/abort">
  <button type="submit" class="secondary" id="abort">Cancel (deny access)</button>
</form>`);
}

function messagePage(title, message) {
  return page(title, `<h1>${escapeHtml(title)}</h1>\n<p>${escapeHtml(message)}</p>`);
}

// ---------------------------------------------------------------------------
// Test introspection: what the provider received (GET /__test/...)

function createTestState() {
  const fresh = () => ({
    lastAuthorize: null,
    lastEndSession: null,
    stats: {
      authorize_requests: 0,
      authorize_refused: 0,
      end_session_requests: 0,
      end_session_refused: 0,
      token_client_auth_refused: 0,
      refresh_grants: 0,
      refresh_refused: 0,
      discovery_requests: 0,
      jwks_requests: 0,
      introspection_requests: 0,
      revocation_requests: 0,
    },
  });
  const state = fresh();
  state.reset = () => Object.assign(state, fresh());
  return state;
}

/** URLSearchParams → plain object (a repeated parameter becomes an array). */
function paramsObject(searchParams) {
  const out = {};
  for (const [name, value] of searchParams) {
    if (!Object.hasOwn(out, name)) out[name] = value;
    else if (Array.isArray(out[name])) out[name].push(value);
    else out[name] = [out[name], value];
  }
  return out;
}

// ---------------------------------------------------------------------------
// ProConnect mode: checks in front of oidc-provider

/**
 * Why a ProConnect authorization request is refused (undefined: accepted).
 * With --api-resources, `resource` is accepted too.
 */
function proconnectAuthProblem(params, apiResources) {
  const accepted = (name) => PROCONNECT_AUTH_PARAMS.has(name) || (apiResources && name === 'resource');
  const unknown = [...new Set([...params.keys()].filter((name) => !accepted(name)))];
  if (unknown.length === 1) return `unsupported parameter: ${unknown[0]}`;
  if (unknown.length > 1) return `unsupported parameters: ${unknown.join(', ')}`;
  const prompt = params.get('prompt');
  if (prompt !== null) {
    const bad = prompt.split(' ').filter((v) => v && !PROCONNECT_PROMPTS.has(v));
    if (bad.length) return `prompt: unsupported value ${bad.join(' ')} (supported: login, consent, none)`;
  }
  for (const name of ['state', 'nonce']) {
    const value = params.get(name);
    if (value === null || value === '') return `${name} is required (at least ${PROCONNECT_MIN_STATE_NONCE} characters)`;
    if (value.length < PROCONNECT_MIN_STATE_NONCE) {
      return `${name} is too short: ${value.length} characters, at least ${PROCONNECT_MIN_STATE_NONCE} required`;
    }
  }
  return undefined;
}

/**
 * The acr a login gets when the login form does not choose one: the first
 * supported value asked for (claims.id_token.acr, then acr_values), else
 * eidas1. Every test user "achieves" every supported level.
 */
function requestedAcr(params, supported) {
  const candidates = [];
  if (typeof params.claims === 'string') {
    try {
      const acr = JSON.parse(params.claims)?.id_token?.acr;
      if (typeof acr?.value === 'string') candidates.push(acr.value);
      if (Array.isArray(acr?.values)) candidates.push(...acr.values);
    } catch { /* oidc-provider refuses a malformed claims parameter */ }
  }
  if (typeof params.acr_values === 'string') candidates.push(...params.acr_values.split(' '));
  return candidates.find((v) => supported.includes(v)) ?? ACR;
}

const amrFor = (acr) => (acr.endsWith('-mfa') ? ['pwd', 'mfa'] : ['pwd']);

// ---------------------------------------------------------------------------
// Provider

async function buildProvider({ Provider, interactionPolicy, errors }, options, issuer, keys, testState) {
  const { proconnect, apiResources } = options;
  const client = {
    client_id: options.clientId,
    client_secret: options.clientSecret,
    client_name: 'Sésame',
    application_type: 'web',
    redirect_uris: options.redirectUris,
    post_logout_redirect_uris: options.postLogoutRedirectUris,
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: options.authMethod,
    id_token_signed_response_alg: options.alg,
    userinfo_signed_response_alg: options.alg,
    // So that the ID token always carries acr and auth_time, as ProConnect's does.
    default_acr_values: [ACR],
    require_auth_time: true,
    // --api-resources: how the client wants introspection answers (JWT
    // answers only on Accept: application/token-introspection+jwt; signed
    // RS256 when no alg is set, oidc-provider's default).
    ...(options.introspectionSignedAlg ? { introspection_signed_response_alg: options.introspectionSignedAlg } : {}),
    ...(options.introspectionEncryption ? {
      introspection_encrypted_response_alg: options.introspectionEncryption,
      introspection_encrypted_response_enc: INTROSPECTION_ENCRYPTION_ENC,
      jwks: options.clientJwks,
    } : {}),
  };

  // ProConnect mode: the acr is the one chosen at login, even when the
  // request marked it essential (no new login prompt): the relying party is
  // the one to refuse a level lower than it asked for.
  let policy;
  if (proconnect) {
    policy = interactionPolicy.base();
    policy.get('login').checks.remove('essential_acr');
    policy.get('login').checks.remove('essential_acrs');
  }

  const configuration = {
    adapter: createMemoryAdapter(),
    clients: [client],
    jwks: { keys },
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
    },
    scopes: ['openid', 'offline_access', ...Object.keys(SCOPE_CLAIMS).filter((s) => s !== 'openid')],
    claims: {
      acr: null, sid: null, auth_time: null, iss: null, ...(proconnect ? { amr: null } : {}), ...SCOPE_CLAIMS,
    },
    acrValues: options.acrValues,
    // Like ProConnect: authorization code flow only, secret-based client auth.
    responseTypes: ['code'],
    clientAuthMethods: proconnect ? ['client_secret_post'] : ['client_secret_post', 'client_secret_basic'],
    // ProConnect's own authorization parameters (kept in the interaction).
    extraParams: proconnect ? ['idp_hint', 'siret_hint'] : [],
    // Default behaviour, stated: with response_type=code the ID token carries
    // only protocol claims; scope claims are served by userinfo.
    conformIdTokenClaims: true,
    async findAccount(ctx, sub) {
      const user = userBySub(sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        async claims() {
          return { ...user };
        },
      };
    },
    interactions: {
      ...(policy ? { policy } : {}),
      url: (ctx, interaction) => `${options.issuerPath}/interaction/${interaction.uid}`,
    },
    features: {
      devInteractions: { enabled: false },
      // ProConnect mode: the `claims` parameter (e.g. to ask for amr).
      claimsParameter: { enabled: proconnect },
      // userinfo answered as a signed JWT (application/jwt), like ProConnect.
      jwtUserinfo: { enabled: true },
      // Needed for oidc-provider to accept a "use":"enc" key in the JWKS.
      encryption: { enabled: true },
      revocation: { enabled: true },
      pushedAuthorizationRequests: { enabled: false },
      dPoP: { enabled: false },
      ...(apiResources ? apiFeatures(options, errors) : {}),
      rpInitiatedLogout: {
        enabled: true,
        // One-button confirmation page; the form carries every field needed
        // (xsrf, logout=yes), so scripted clients can submit it as is.
        // (ProConnect mode skips it: see proconnectAutoLogout.)
        async logoutSource(ctx, form) {
          const confirm = '<input type="hidden" name="logout" value="yes"/>'
            + '<button type="submit" id="logout" autofocus>Sign out</button></form>';
          ctx.type = 'html';
          ctx.body = page('Sign out', `<h1>Sign out</h1>
<p>Sign out of the test OpenID provider${ctx.oidc.client ? ` and of <strong>${escapeHtml(ctx.oidc.client.clientName ?? ctx.oidc.client.clientId)}</strong>` : ''}?</p>
${form.replace('</form>', confirm)}`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = messagePage('Signed out', 'You are signed out of the test OpenID provider.');
        },
      },
    },
    ...(apiResources ? apiConfiguration(options, errors) : {}),
    ttl: Object.fromEntries(Object.entries({ ...TTL, AccessToken: options.accessTokenTtl })
      .map(([name, seconds]) => [name, () => seconds])),
    // --refresh-tokens: a refresh token with every code exchange (without
    // offline_access), rotated at each use, so a refresh token used twice is
    // refused (and the grant revoked), as strict providers do.
    ...(options.refreshTokens ? {
      issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
      rotateRefreshToken: true,
    } : {}),
    clientBasedCORS: () => false,
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', `<h1>Error</h1>\n<dl>${Object.entries(out)
        .map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('')}</dl>`);
    },
  };

  // ES384 is not among oidc-provider's default signing algorithms.
  if (options.alg === 'ES384') {
    configuration.enabledJWA = {
      ...configuration.enabledJWA,
      idTokenSigningAlgValues: ['RS256', 'ES256', 'ES384'],
      userinfoSigningAlgValues: ['RS256', 'ES256', 'ES384'],
    };
  }
  const provider = new Provider(issuer, configuration);

  // Refresh grants, counted for the tests (GET /__test/stats).
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc?.params?.grant_type === 'refresh_token') testState.stats.refresh_grants += 1;
  });
  provider.on('grant.error', (ctx) => {
    if (ctx.oidc?.params?.grant_type === 'refresh_token') testState.stats.refresh_refused += 1;
  });

  // Log protocol errors (error code and description only: never tokens).
  for (const event of [
    'authorization.error', 'grant.error', 'userinfo.error', 'end_session.error',
    'end_session_confirm.error', 'revocation.error', 'introspection.error', 'jwks.error', 'discovery.error',
    'check_session_origin.error', 'server_error',
  ]) {
    provider.on(event, (ctx, err) => {
      const label = err?.error ?? err?.name ?? 'error';
      const detail = [err?.error_description ?? err?.message, err?.error_detail].filter(Boolean).join(': ');
      process.stdout.write(`  ${event}: ${label}${detail ? ` (${detail})` : ''}\n`);
      if (event === 'server_error' && err?.stack) process.stderr.write(`${err.stack}\n`);
    });
  }

  // In front of oidc-provider's routes (provider.use runs before them; paths
  // here are relative to the issuer path): record what /auth and
  // /session/end receive, and in ProConnect mode apply ProConnect's rules.
  provider.use(async (ctx, next) => {
    // (Only GET: oidc-provider serves neither with POST unless
    // enableHttpPostMethods, which is off.)
    if (ctx.method !== 'GET' || (ctx.path !== '/auth' && ctx.path !== '/session/end')) return next();
    const isAuth = ctx.path === '/auth';
    const params = new URLSearchParams(ctx.querystring);

    if (isAuth) {
      testState.lastAuthorize = paramsObject(params);
      testState.stats.authorize_requests += 1;
      if (proconnect) {
        const problem = proconnectAuthProblem(params, options.apiResources);
        if (problem) {
          testState.stats.authorize_refused += 1;
          refuseAuthorization(ctx, provider, options, problem, params);
          return undefined;
        }
      }
      return next();
    }

    // /session/end
    testState.lastEndSession = paramsObject(params);
    testState.stats.end_session_requests += 1;
    if (!options.logoutAtOnce) return next();
    const missing = proconnect
      ? PROCONNECT_END_SESSION_PARAMS.filter((name) => !params.get(name))
      : [];
    if (missing.length) {
      testState.stats.end_session_refused += 1;
      const problem = `missing required parameter${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`;
      process.stdout.write(`  end_session.refused: invalid_request (${problem})\n`);
      ctx.status = 400;
      ctx.type = 'html';
      ctx.set('Cache-Control', 'no-store');
      ctx.body = page('Error', `<h1>Error</h1>\n<dl><dt>error</dt><dd>invalid_request</dd><dt>error_description</dt><dd>${escapeHtml(problem)}</dd></dl>`);
      return undefined;
    }
    await next();
    // oidc-provider accepted the request (id_token_hint valid,
    // post_logout_redirect_uri registered) and answered its confirmation page
    // (or, without a provider session, its auto-submitting form): confirm at
    // once, as ProConnect logs out without asking (--proconnect, or
    // --logout-without-confirmation).
    if (ctx.status === 200 && ctx.oidc?.route === 'end_session') {
      await proconnectAutoLogout(ctx, provider);
    } else if (ctx.status >= 400) {
      testState.stats.end_session_refused += 1;
    }
    return undefined;
  });

  return provider;
}

/**
 * --api-resources: oidc-provider features for the two resource servers and
 * introspection.
 */
function apiFeatures(options, errors) {
  return {
    resourceIndicators: {
      enabled: true,
      // No default resource: an authorization or token request without
      // `resource` gets the usual access token (for userinfo).
      defaultResource: async (ctx, client, oneOf) => oneOf,
      useGrantedResource: async () => false,
      async getResourceServerInfo(ctx, resourceIndicator) {
        const format = API_RESOURCES[resourceIndicator];
        if (!format) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator} (known: ${Object.keys(API_RESOURCES).join(', ')})`);
        return {
          scope: API_SCOPES.join(' '),
          audience: resourceIndicator,
          accessTokenTTL: options.accessTokenTtl,
          accessTokenFormat: format,
          ...(format === 'jwt' ? { jwt: { sign: { alg: API_JWT_ALG } } } : {}),
        };
      },
    },
    introspection: {
      enabled: true,
      // The client (the resource server's credentials) may introspect every
      // token of the provider (they are all issued to it).
      allowedPolicy: async (ctx, client) => client.clientId === options.clientId,
    },
    jwtIntrospection: { enabled: true },
    // As by default (a client revokes only its own tokens), stated, so that
    // oidc-provider does not print a notice at each revocation.
    revocation: {
      enabled: true,
      async allowedPolicy(ctx, client, token) {
        if (token.clientId !== client.clientId) throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        return true;
      },
    },
  };
}

/** --api-resources: configuration outside `features`. */
function apiConfiguration() {
  return {
    // Discovery lists only the encryptions --introspection-encryption offers.
    enabledJWA: {
      introspectionEncryptionAlgValues: [...INTROSPECTION_ENCRYPTION_ALGS],
      introspectionEncryptionEncValues: [INTROSPECTION_ENCRYPTION_ENC],
    },
    // The user's email in API access tokens (JWT claim; introspection answer
    // of opaque ones). Only tokens for a resource server: the access token of
    // a plain sign-in (userinfo) is left as it is.
    async extraTokenClaims(ctx, token) {
      if (!token.resourceServer || !token.accountId) return undefined;
      const user = userBySub(token.accountId);
      return user ? { email: user.email } : undefined;
    },
  };
}

/**
 * An authorization request refused in ProConnect mode: back to the client's
 * redirect URI with error=invalid_request (and the state, and iss), or a 400
 * page when the client or its redirect URI is unknown.
 */
function refuseAuthorization(ctx, provider, options, problem, params) {
  process.stdout.write(`  authorization.refused: invalid_request (${problem})\n`);
  ctx.set('Cache-Control', 'no-store');
  const redirectUri = params.get('redirect_uri');
  if (params.get('client_id') === options.clientId && redirectUri && options.redirectUris.includes(redirectUri)) {
    const target = new URL(redirectUri);
    target.searchParams.append('error', 'invalid_request');
    target.searchParams.append('error_description', problem);
    const state = params.get('state');
    if (state !== null) target.searchParams.append('state', state);
    target.searchParams.append('iss', provider.issuer);
    ctx.status = 303;
    ctx.redirect(target.href);
    return;
  }
  ctx.status = 400;
  ctx.type = 'html';
  ctx.body = page('Error', `<h1>Error</h1>\n<dl><dt>error</dt><dd>invalid_request</dd><dt>error_description</dt><dd>${escapeHtml(problem)}</dd>`
    + `<dt>note</dt><dd>${escapeHtml('unknown client_id or redirect_uri: the error cannot be sent back to the client')}</dd></dl>`);
}

/**
 * What oidc-provider's POST /session/end/confirm (logout=yes) does, done at
 * once: revoke the session's grants, destroy the session, clear its cookie,
 * redirect to post_logout_redirect_uri with the state.
 */
async function proconnectAutoLogout(ctx, provider) {
  const { session } = ctx.oidc;
  const { postLogoutRedirectUri, state } = session.state ?? {};
  for (const { grantId } of Object.values(session.authorizations ?? {})) {
    if (!grantId) continue;
    await Promise.all([
      provider.AccessToken.revokeByGrantId(grantId),
      provider.RefreshToken.revokeByGrantId(grantId),
      provider.AuthorizationCode.revokeByGrantId(grantId),
      provider.Grant.adapter.destroy(grantId),
    ]);
  }
  await session.destroy();
  ctx.cookies.set(provider.cookieName('session'), null, { httpOnly: true, sameSite: 'lax', overwrite: true });
  const target = new URL(postLogoutRedirectUri);
  if (state != null) target.searchParams.append('state', state);
  process.stdout.write('  end_session: logged out without confirmation (proconnect)\n');
  ctx.status = 303;
  ctx.redirect(target.href);
}

// ---------------------------------------------------------------------------
// Interactions (login page, auto-consent)

async function readForm(req, limit = 16 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendHtml(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'");
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.end(html);
}

/**
 * A Grant holding everything the authorization request asked for (with
 * --api-resources: the requested API scopes for each requested resource).
 */
async function grantFor(provider, options, interaction, accountId) {
  const { params, prompt } = interaction;
  let grant;
  if (interaction.grantId) grant = await provider.Grant.find(interaction.grantId);
  // The session's grant belongs to whoever was signed in: someone else
  // signing in (prompt=login) gets a grant of their own.
  if (grant && grant.accountId !== accountId) grant = undefined;
  grant ??= new provider.Grant({ accountId, clientId: params.client_id });
  if (params.scope) grant.addOIDCScope(String(params.scope));
  if (options.apiResources && params.resource && params.scope) {
    const requested = String(params.scope).split(' ').filter((s) => API_SCOPES.includes(s));
    for (const resource of [params.resource].flat().map(String)) {
      if (Object.hasOwn(API_RESOURCES, resource) && requested.length) grant.addResourceScope(resource, requested.join(' '));
    }
  }
  const details = prompt?.details ?? {};
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant.save();
}

async function handleInteraction(provider, options, req, res, pathname) {
  const match = /^\/interaction\/([A-Za-z0-9_-]+)(\/login|\/abort)?$/.exec(pathname);
  if (!match) return sendHtml(res, 404, messagePage('Not found', 'No such page.'));
  const [, uid, action] = match;

  let interaction;
  try {
    interaction = await provider.interactionDetails(req, res);
  } catch (err) {
    return sendHtml(res, 400, messagePage('Sign-in session expired',
      `This sign-in attempt is unknown or has expired (${err.error_description ?? err.message}). Go back to the application and start again.`));
  }
  if (interaction.uid !== uid) {
    return sendHtml(res, 400, messagePage('Sign-in session mismatch',
      'This page belongs to another sign-in attempt. Go back to the application and start again.'));
  }

  if (!action) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return sendHtml(res, 405, messagePage('Method not allowed', 'Use GET.'));
    }
    if (interaction.prompt.name === 'login') {
      const client = await provider.Client.find(String(interaction.params.client_id));
      const acr = options.proconnect
        ? { supported: options.acrValues, requested: requestedAcr(interaction.params, options.acrValues) }
        : undefined;
      return sendHtml(res, 200, loginPage(`${options.issuerPath}/interaction/${encodeURIComponent(uid)}`,
        client?.clientName ?? String(interaction.params.client_id), String(interaction.params.scope ?? ''), acr));
    }
    // Consent (already signed in, new scopes): approve automatically.
    const grantId = await grantFor(provider, options, interaction, interaction.session.accountId);
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  if (req.method !== 'POST') {
    res.setHeader('Allow', 'POST');
    return sendHtml(res, 405, messagePage('Method not allowed', 'Use POST.'));
  }

  if (action === '/abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'the user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
  }

  // action === '/login'
  const form = await readForm(req);
  const user = USERS[form.get('user') ?? ''];
  if (!user) return sendHtml(res, 400, messagePage('Unknown user', `Choose one of: ${Object.keys(USERS).join(', ')}.`));
  if (interaction.prompt.name !== 'login' && interaction.session?.accountId
      && interaction.session.accountId !== user.sub) {
    return sendHtml(res, 400, messagePage('Already signed in', 'Another user is signed in for this attempt.'));
  }
  // The authentication level: chosen on the form (any supported value, even
  // lower than requested), else the one requested.
  const chosenAcr = form.get('acr') ?? '';
  if (chosenAcr && !options.acrValues.includes(chosenAcr)) {
    return sendHtml(res, 400, messagePage('Unknown acr', `Choose one of: ${options.acrValues.join(', ')} (or nothing: as requested).`));
  }
  const acr = chosenAcr || (options.proconnect ? requestedAcr(interaction.params, options.acrValues) : ACR);
  // Log in and consent in one go: the grant covers every requested scope.
  const grantId = await grantFor(provider, options, interaction, user.sub);
  return provider.interactionFinished(req, res, {
    login: { accountId: user.sub, acr, amr: amrFor(acr), remember: true },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

// ---------------------------------------------------------------------------
// Strict client authentication

// oidc-provider accepts client_secret_basic and client_secret_post
// interchangeably for a client registered with either. Sésame must use the
// registered one, so the method is enforced here, from the Authorization
// header alone (the body is left for oidc-provider to read).
const CLIENT_AUTH_PATHS = new Set(['/token', '/token/revocation']);
// With --api-resources, the introspection endpoint as well.
const INTROSPECTION_PATH = '/token/introspection';

function clientAuthMismatch(req, authMethod, proconnect) {
  const basic = /^basic\s/i.test(req.headers.authorization ?? '');
  if (proconnect && req.headers.authorization !== undefined) {
    return `ProConnect accepts only client_secret_post: send client_id and client_secret in the form body, not in an Authorization${basic ? ': Basic' : ''} header`;
  }
  if (authMethod === 'client_secret_basic' && !basic) {
    return 'the client is registered for client_secret_basic: send the credentials in an Authorization: Basic header';
  }
  if (authMethod === 'client_secret_post' && req.headers.authorization !== undefined) {
    return 'the client is registered for client_secret_post: send client_id and client_secret in the form body, not in an Authorization header';
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Main

async function main() {
  const options = parseCommandLine(process.argv.slice(2));
  // Key generation (thread pool) and module loading overlap with listen().
  const keysReady = loadOrGenerateKeys(options.keysFile, options.alg);
  const providerModule = import('oidc-provider');
  keysReady.catch(() => {});
  providerModule.catch(() => {});

  let handler = (req, res) => {
    res.statusCode = 503;
    res.setHeader('Retry-After', '1');
    res.end('starting\n');
  };

  const server = createServer((req, res) => {
    const started = process.hrtime.bigint();
    let path = '/';
    try {
      path = new URL(req.url ?? '/', 'http://x').pathname;
    } catch { /* keep "/" */ }
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      process.stdout.write(`${req.method} ${path} ${res.statusCode} ${ms.toFixed(1)}ms\n`);
    });
    handler(req, res);
  });
  server.keepAliveTimeout = 5_000;

  await new Promise((resolveListen, rejectListen) => {
    server.once('error', rejectListen);
    server.listen(options.port, options.host, () => {
      server.off('error', rejectListen);
      resolveListen();
    });
  }).catch((err) => {
    process.stderr.write(`provider: cannot listen on ${options.host}:${options.port}: ${err.message}\n`);
    process.exit(1);
  });

  const { port } = server.address();
  const hostForUrl = options.host.includes(':') ? `[${options.host}]` : options.host;
  const base = `http://${hostForUrl}:${port}`;
  const issuer = options.issuer ?? `${base}${options.issuerPath}`;
  const testState = createTestState();

  const [keys, { default: Provider, interactionPolicy, errors }] = await Promise.all([keysReady, providerModule]);
  const provider = await buildProvider({ Provider, interactionPolicy, errors }, options, issuer, keys, testState);
  const providerCallback = provider.callback();

  const sendJson = (res, status, value) => {
    res.statusCode = status;
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.end(`${JSON.stringify(value)}\n`);
  };

  // Test-only endpoints (at the root and under the issuer path).
  const testEndpoints = {
    '/__test/last-authorize': ['GET', () => testState.lastAuthorize],
    '/__test/last-end-session': ['GET', () => testState.lastEndSession],
    '/__test/stats': ['GET', () => testState.stats],
    '/__test/reset': ['POST', () => { testState.reset(); return { reset: true }; }],
  };

  handler = (req, res) => {
    let url;
    try {
      url = new URL(req.url ?? '/', base);
    } catch {
      return sendHtml(res, 400, messagePage('Bad request', 'Malformed URL.'));
    }
    // Under --issuer-path, everything but the test endpoints lives below the
    // prefix. Like a framework's mount (express's app.use(path, ...)): the
    // prefix is taken off req.url and the full one kept in req.originalUrl,
    // from which oidc-provider builds its URLs (discovery, redirects, forms).
    let { pathname } = url;
    const prefix = options.issuerPath;
    if (prefix) {
      const raw = req.url ?? '/';
      const inside = raw === prefix || raw.startsWith(`${prefix}/`) || raw.startsWith(`${prefix}?`);
      if (inside) {
        req.originalUrl = raw;
        req.url = raw.slice(prefix.length) || '/';
        if (req.url.startsWith('?')) req.url = `/${req.url}`;
        pathname = pathname.slice(prefix.length) || '/';
      } else if (!Object.hasOwn(testEndpoints, pathname) && pathname !== '/healthz') {
        return sendHtml(res, 404, messagePage('Not found', `Everything is under ${prefix} (issuer ${issuer}).`));
      }
    }
    if (pathname === '/.well-known/openid-configuration') testState.stats.discovery_requests += 1;
    if (pathname === '/jwks') testState.stats.jwks_requests += 1;

    if (Object.hasOwn(testEndpoints, pathname)) {
      const [method, answer] = testEndpoints[pathname];
      req.resume();
      if (req.method !== method) {
        res.setHeader('Allow', method);
        return sendJson(res, 405, { error: `use ${method}` });
      }
      return sendJson(res, 200, answer());
    }
    if (pathname === '/interaction' || pathname.startsWith('/interaction/')) {
      handleInteraction(provider, options, req, res, pathname).catch((err) => {
        process.stderr.write(`interaction error: ${err.stack ?? err}\n`);
        if (!res.headersSent) sendHtml(res, err.status ?? 500, messagePage('Error', err.message));
        else res.destroy();
      });
      return undefined;
    }
    if (pathname === '/healthz') {
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.end('ok\n');
      return undefined;
    }
    if (pathname === '/token/revocation' && req.method === 'POST') testState.stats.revocation_requests += 1;
    const introspection = options.apiResources && pathname === INTROSPECTION_PATH;
    if (introspection && req.method === 'POST') testState.stats.introspection_requests += 1;
    if (req.method === 'POST' && (CLIENT_AUTH_PATHS.has(pathname) || introspection)) {
      const problem = clientAuthMismatch(req, options.authMethod, options.proconnect);
      if (problem) {
        testState.stats.token_client_auth_refused += 1;
        process.stdout.write(`  client_auth.error: invalid_client (${problem})\n`);
        res.statusCode = 401;
        res.setHeader('Content-Type', 'application/json; charset=utf-8');
        res.setHeader('Cache-Control', 'no-store');
        if (options.authMethod === 'client_secret_basic') res.setHeader('WWW-Authenticate', 'Basic realm="token"');
        res.end(JSON.stringify({ error: 'invalid_client', error_description: problem }));
        req.resume();
        return undefined;
      }
    }
    return providerCallback(req, res);
  };

  const shutdown = (signal) => {
    process.stdout.write(`received ${signal}, shutting down\n`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2_000).unref();
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);

  if (issuer !== base || options.proconnect) {
    process.stdout.write(`issuer ${issuer}${options.proconnect ? ' (ProConnect mode)' : ''}\n`);
  }
  process.stdout.write(`listening on ${base}\n`);
}

main().catch((err) => {
  process.stderr.write(`provider: ${err.stack ?? err}\n`);
  process.exit(1);
});
