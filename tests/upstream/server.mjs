#!/usr/bin/env node
/**
 * Sésame's demo upstream application, for the tests and the demo.
 *
 * It stands for the application that Sésame protects, and shows what reached
 * it: the identity headers Sésame added (x-forwarded-email, ...) and every
 * other request header. Node built-ins only.
 *
 * Usage:
 *   node tests/upstream/server.mjs --port 9100 [--host 127.0.0.1]
 *
 * Behaviour:
 *   - Any HTTP request whose `Accept` header contains `application/json` gets
 *     200 JSON: {"method": ..., "path": ..., "headers": {name: value}}, with
 *     lower-case header names and repeated headers joined with ", ". `path`
 *     is the request target as received (path and query).
 *   - Any other request gets 200 text/html: a page titled "Sésame demo
 *     upstream" greeting the person named by `x-forwarded-email` (in
 *     `<p id="email">`), a table of all request headers, and a sign-out link
 *     to /oauth2/sign_out?rd=/oauth2/signed_out (Sésame's "signed out" page).
 *   - A WebSocket upgrade (`Upgrade: websocket` + `Sec-WebSocket-Key`) is
 *     accepted per RFC 6455 (the first offered subprotocol, if any, is
 *     selected); the server sends one text frame holding the same JSON as
 *     above for the upgrade request, then a close frame (1000), and ends the
 *     connection. Other upgrades get 400.
 *
 * One line is logged per request (method, path without query, status); the
 * line `listening on http://HOST:PORT` is printed once ready (`--port 0`
 * picks a free port). SIGTERM and SIGINT stop the server cleanly (exit 0).
 */

import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const USAGE = 'usage: node tests/upstream/server.mjs --port PORT [--host 127.0.0.1]';
const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const LONG_VALUE = 80; // header values longer than this are shown truncated

function fail(message) {
  process.stderr.write(`upstream: ${message}\n${USAGE}\n`);
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
  return { port: Number(values.port), host: values.host };
}

/** Request headers as {lower-case name: value}, repeated ones joined with ", ". */
function headerObject(req) {
  const headers = {};
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    headers[name] = name in headers ? `${headers[name]}, ${raw[i + 1]}` : raw[i + 1];
  }
  return headers;
}

function describe(req) {
  return { method: req.method, path: req.url, headers: headerObject(req) };
}

function pathOf(req) {
  const target = req.url ?? '/';
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

function log(method, path, status) {
  process.stdout.write(`${method} ${path} ${status}\n`);
}

const escapeHtml = (value) => String(value)
  .replaceAll('&', '&amp;')
  .replaceAll('<', '&lt;')
  .replaceAll('>', '&gt;')
  .replaceAll('"', '&quot;')
  .replaceAll("'", '&#39;');

const STYLE = `
  :root { color-scheme: light dark; }
  body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }
  h1 { font-size: 1.6rem; margin-bottom: .25rem; }
  #email { font-size: 1.25rem; font-weight: 600; margin-top: 0; }
  #email.none { font-weight: normal; font-style: italic; }
  table { border-collapse: collapse; width: 100%; table-layout: fixed; }
  caption { text-align: left; font-weight: 600; padding: .5rem 0; }
  th, td { border-bottom: 1px solid #8885; padding: .35rem .5rem; text-align: left; vertical-align: top; }
  col.name { width: 16rem; }
  th[scope=row] { font-weight: 600; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
  td { font-family: ui-monospace, monospace; font-size: .9rem; overflow-wrap: anywhere; }
  tr.identity th, tr.identity td { background: #0a76f61a; }
  details summary { cursor: pointer; }
  .actions a { display: inline-block; margin-top: 1rem; padding: .4rem .9rem; border-radius: .35rem; background: #000091; color: #fff; text-decoration: none; }
  .actions a:focus-visible { outline: 3px solid #ff9940; outline-offset: 2px; }
  .muted { opacity: .75; font-size: .9rem; }
`;

function htmlPage(info) {
  const email = info.headers['x-forwarded-email'];
  const rows = Object.entries(info.headers).map(([name, value]) => {
    const cls = name.startsWith('x-forwarded-') || name.startsWith('x-auth-') || name === 'authorization'
      ? ' class="identity"' : '';
    const cell = value.length > LONG_VALUE
      ? `<details><summary title="${escapeHtml(value)}">${escapeHtml(value.slice(0, LONG_VALUE))}… <span class="muted">(${value.length} characters)</span></summary>${escapeHtml(value)}</details>`
      : escapeHtml(value);
    return `    <tr${cls}><th scope="row">${escapeHtml(name)}</th><td>${cell}</td></tr>`;
  }).join('\n');
  const greeting = email
    ? `<p>Hello, you are signed in as</p>\n<p id="email">${escapeHtml(email)}</p>`
    : '<p id="email" class="none">no identity received</p>';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sésame demo upstream</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>Sésame demo upstream</h1>
${greeting}
<p class="muted">${escapeHtml(info.method)} <code>${escapeHtml(info.path)}</code></p>
<table>
  <caption>Request headers received (${Object.keys(info.headers).length})</caption>
  <colgroup><col class="name"><col></colgroup>
  <thead><tr><th scope="col">Header</th><th scope="col">Value</th></tr></thead>
  <tbody>
${rows}
  </tbody>
</table>
<p class="actions"><a href="/oauth2/sign_out?rd=/oauth2/signed_out" id="sign-out">Sign out</a></p>
</main>
</body>
</html>
`;
}

function handleRequest(req, res) {
  const info = describe(req);
  res.on('finish', () => log(req.method, pathOf(req), res.statusCode));
  // Read the whole request body: the answer says how long it was and its
  // SHA-256 (what a filter that holds a body while it waits passed on).
  const hash = createHash('sha256');
  let length = 0;
  req.on('data', (chunk) => { hash.update(chunk); length += chunk.length; });
  req.on('end', () => {
    info.body = { length, sha256: hash.digest('hex') };
    answer(req, res, info);
  });
}

function answer(req, res, info) {
  const wantsJson = (req.headers.accept ?? '').toLowerCase().includes('application/json');
  const body = wantsJson ? `${JSON.stringify(info)}\n` : htmlPage(info);
  res.statusCode = 200;
  res.setHeader('Content-Type', wantsJson ? 'application/json; charset=utf-8' : 'text/html; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Vary', 'Accept');
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** An unmasked server-to-client WebSocket frame (FIN set). */
function wsFrame(opcode, payload) {
  const length = payload.length;
  let header;
  if (length < 126) {
    header = Buffer.from([0x80 | opcode, length]);
  } else if (length < 0x10000) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  return Buffer.concat([header, payload]);
}

function rejectUpgrade(socket, req, status, reason) {
  const body = `${reason}\n`;
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\n`
    + `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  log(req.method, pathOf(req), status);
}

function handleUpgrade(req, socket) {
  socket.on('error', () => socket.destroy());
  const upgrade = (req.headers.upgrade ?? '').toLowerCase();
  const key = req.headers['sec-websocket-key'];
  if (upgrade !== 'websocket' || req.method !== 'GET') {
    rejectUpgrade(socket, req, 400, 'Bad Request');
    return;
  }
  if (typeof key !== 'string' || Buffer.from(key, 'base64').length !== 16) {
    rejectUpgrade(socket, req, 400, 'Bad Request');
    return;
  }
  const accept = createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64');
  const offered = (req.headers['sec-websocket-protocol'] ?? '')
    .split(',').map((p) => p.trim()).filter(Boolean);
  const lines = [
    'HTTP/1.1 101 Switching Protocols',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${accept}`,
  ];
  if (offered.length) lines.push(`Sec-WebSocket-Protocol: ${offered[0]}`);
  const close = Buffer.alloc(2);
  close.writeUInt16BE(1000, 0);
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  socket.write(wsFrame(0x1, Buffer.from(JSON.stringify(describe(req)), 'utf8')));
  socket.end(wsFrame(0x8, close));
  // Whatever the client sends (its close frame) is read and discarded.
  socket.resume();
  log(req.method, pathOf(req), 101);
}

function main() {
  const options = parseCommandLine(process.argv.slice(2));
  // Generous header limit (Node's default is 16 KiB) so that big cookies or
  // tokens forwarded by the proxy still reach the page.
  const server = createServer({ maxHeaderSize: 256 * 1024 }, handleRequest);
  server.on('upgrade', handleUpgrade);
  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  server.keepAliveTimeout = 5_000;
  server.once('error', (err) => {
    process.stderr.write(`upstream: cannot listen on ${options.host}:${options.port}: ${err.message}\n`);
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
