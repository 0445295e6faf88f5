#!/usr/bin/env node
/**
 * A fresh encryption key pair for a resource server (Sésame's client), to
 * receive encrypted introspection answers from the local provider
 * (server.mjs --introspection-encryption ... --client-jwks PATH).
 *
 * Usage:
 *   node tests/provider/keygen.mjs rsa   # RSA 2048, alg RSA-OAEP-256
 *   node tests/provider/keygen.mjs ec    # EC P-256, alg ECDH-ES
 *
 * Prints one JSON object on stdout:
 *   {"private": <private JWK>, "public": <public JWK>}
 * Both carry the same `kid` (RFC 7638 thumbprint), `alg` and `"use":"enc"`.
 * The provider is given `{"keys": [<public JWK>]}`; the private JWK is the
 * resource server's, to decrypt the answers.
 */

import { generateKeyPairSync } from 'node:crypto';

import { calculateJwkThumbprint } from 'jose';

const KINDS = Object.freeze({
  rsa: { type: 'rsa', options: { modulusLength: 2048 }, alg: 'RSA-OAEP-256' },
  ec: { type: 'ec', options: { namedCurve: 'P-256' }, alg: 'ECDH-ES' },
});

async function main(argv) {
  const kind = KINDS[argv[0]];
  if (argv.length !== 1 || !kind) {
    process.stderr.write('usage: node tests/provider/keygen.mjs rsa|ec\n');
    process.exit(2);
  }
  const { privateKey, publicKey } = generateKeyPairSync(kind.type, kind.options);
  const publicJwk = publicKey.export({ format: 'jwk' });
  const kid = `${kind.alg.toLowerCase()}-${(await calculateJwkThumbprint(publicJwk, 'sha256')).slice(0, 16)}`;
  const common = { kid, use: 'enc', alg: kind.alg };
  const out = {
    private: { ...privateKey.export({ format: 'jwk' }), ...common },
    public: { ...publicJwk, ...common },
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`keygen: ${err.stack ?? err}\n`);
  process.exit(1);
});
