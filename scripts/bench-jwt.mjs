// Mints RFC 9068 JWT access tokens signed with the local test provider's own
// ES256 key (from its --keys-file), so that they verify against its JWKS:
// the bearer-token load of scripts/bench.py.
//
//   node scripts/bench-jwt.mjs KEYS_FILE ISSUER AUDIENCE SCOPE COUNT [TTL_SECONDS]
//
// Prints one token a line. Claims: iss, aud, sub, email, scope, client_id,
// iat, exp, jti; header typ "at+jwt" and the key's kid.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { randomUUID } from 'node:crypto';

const root = fileURLToPath(new URL('..', import.meta.url));
const requireFromTests = createRequire(`${root}tests/package.json`);
const jose = await import(pathToFileURL(requireFromTests.resolve('jose')).href);

const [keysFile, issuer, audience, scope, countText, ttlText] = process.argv.slice(2);
if (!keysFile || !issuer || !audience || !scope || !countText) {
  process.stderr.write('usage: node scripts/bench-jwt.mjs KEYS_FILE ISSUER AUDIENCE SCOPE COUNT [TTL_SECONDS]\n');
  process.exit(2);
}
const { keys } = JSON.parse(readFileSync(keysFile, 'utf8'));
const jwk = keys.find((k) => k.kty === 'EC' && k.crv === 'P-256' && k.use !== 'enc');
if (!jwk) {
  process.stderr.write(`bench-jwt: no ES256 signing key in ${keysFile}\n`);
  process.exit(2);
}
const key = await jose.importJWK(jwk, 'ES256');
const ttl = Number(ttlText ?? 3600);
const now = Math.floor(Date.now() / 1000);
const users = [
  { sub: 'alice-7f3a', email: 'alice.martin@numerique.gouv.fr' },
  { sub: 'bob-91c2', email: 'bob.durand@interieur.gouv.fr' },
];
const out = [];
for (let i = 0; i < Number(countText); i += 1) {
  const user = users[i % users.length];
  out.push(await new jose.SignJWT({ ...user, scope, client_id: 'bench-client' })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: jwk.kid })
    .setIssuer(issuer)
    .setAudience(audience)
    .setIssuedAt(now)
    .setExpirationTime(now + ttl)
    .setJti(randomUUID())
    .sign(key));
}
process.stdout.write(`${out.join('\n')}\n`);
