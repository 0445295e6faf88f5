#!/usr/bin/env node
/**
 * JOSE checks for the tests, with the `jose` package: verify a JWS against a
 * JWKS, decrypt a JWE with a private JWK. Reads one JSON object on stdin,
 * prints one JSON object on stdout (exit 0), or the error on stderr (exit 1).
 *
 *   node tests/provider/jose-tool.mjs verify
 *     stdin:  {"jwt": "...", "jwks": {"keys": [...]},
 *              "issuer"?: "...", "audience"?: "...", "typ"?: "...",
 *              "algorithms"?: ["ES256"]}
 *     stdout: {"header": {...}, "payload": {...}}
 *     (signature, and exp/nbf; iss, aud and typ when given)
 *
 *   node tests/provider/jose-tool.mjs decrypt
 *     stdin:  {"jwe": "...", "key": <private JWK>}
 *     stdout: {"header": {...}, "plaintext": "..."}
 */

import {
  compactDecrypt, createLocalJWKSet, importJWK, jwtVerify,
} from 'jose';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

const COMMANDS = {
  async verify(input) {
    const { payload, protectedHeader } = await jwtVerify(input.jwt, createLocalJWKSet(input.jwks), {
      issuer: input.issuer,
      audience: input.audience,
      typ: input.typ,
      algorithms: input.algorithms,
    });
    return { header: protectedHeader, payload };
  },
  async decrypt(input) {
    const { alg } = input.key;
    const key = await importJWK(input.key, alg);
    const { plaintext, protectedHeader } = await compactDecrypt(input.jwe, key);
    return { header: protectedHeader, plaintext: new TextDecoder().decode(plaintext) };
  },
};

async function main(argv) {
  const command = COMMANDS[argv[0]];
  if (argv.length !== 1 || !command) {
    process.stderr.write('usage: node tests/provider/jose-tool.mjs verify|decrypt < input.json\n');
    process.exit(2);
  }
  const out = await command(await readStdin());
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`jose-tool: ${err.code ? `${err.code}: ` : ''}${err.message}\n`);
  process.exit(1);
});
