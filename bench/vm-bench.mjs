// The wasm side of a request, alone: a proxy-wasm filter loaded in Node's V8
// (the engine Envoy runs it in) behind a stub host, and the callbacks Envoy
// makes for one request (context create, request headers, response headers,
// a response body of one chunk, done, log, delete; like Envoy, only those the
// module exports) timed in a loop. No Envoy, no network, no other process:
// the figure moves far less than a throughput run on a shared machine, and
// tells the filter's own code apart from Envoy's cost of the hostcalls.
//
//   node bench/vm-bench.mjs FILTER.wasm PLUGIN_CONFIG.json COOKIES.txt PATH [ROUNDS] [REQUESTS]
//
// COOKIES.txt: one `Cookie` header value a line (used in turn), or empty for
// requests without one. Prints one JSON object: nanoseconds per request (the
// best round and the median), the hostcalls of one request by name, those of
// all the timed requests (`timed`: the host never calls the filter's timer
// here), and the request's header changes (what the filter asked the host to
// add, remove or answer), so that a run also shows the filter did its work.

import fs from "node:fs";
import crypto from "node:crypto";

const [wasmPath, configPath, cookiesPath, path, roundsArg, requestsArg] = process.argv.slice(2);
if (!path) {
  console.error("usage: vm-bench.mjs FILTER.wasm PLUGIN_CONFIG.json COOKIES.txt PATH [ROUNDS] [REQUESTS]");
  process.exit(2);
}
const rounds = Number(roundsArg || 7);
const requests = Number(requestsArg || 20000);
const pluginConfig = fs.readFileSync(configPath);
const cookies = fs.readFileSync(cookiesPath, "utf8").split("\n").filter(Boolean);

const OK = 0;
const NOT_FOUND = 1;
const te = new TextEncoder();
const td = new TextDecoder();
let ex;
// Views of the module's memory, made again only when it grew.
let views = { buffer: null, u8: null, dv: null };
function view() {
  if (views.buffer !== ex.memory.buffer) {
    const buffer = ex.memory.buffer;
    views = { buffer, u8: new Uint8Array(buffer), dv: new DataView(buffer) };
  }
  return views;
}
const u8 = () => view().u8;
const dv = () => view().dv;
const text = (ptr, len) => td.decode(u8().subarray(ptr, ptr + len));

// Hands bytes to the module as the proxy-wasm ABI does: memory from its own
// allocator, then the pointer and size written where it asked.
function give(bytes, retPtr, retSize) {
  const at = ex.proxy_on_memory_allocate(bytes.length);
  u8().set(bytes, at);
  dv().setUint32(retPtr, at, true);
  dv().setUint32(retSize, bytes.length, true);
  return OK;
}

// The proxy-wasm serialisation of a header map.
function serialise(pairs) {
  const enc = pairs.map(([k, v]) => [te.encode(k), te.encode(v)]);
  let size = 4 + enc.length * 8;
  for (const [k, v] of enc) size += k.length + v.length + 2;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, enc.length, true);
  let at = 4 + enc.length * 8;
  enc.forEach(([k, v], i) => {
    view.setUint32(4 + i * 8, k.length, true);
    view.setUint32(8 + i * 8, v.length, true);
    out.set(k, at);
    at += k.length + 1;
    out.set(v, at);
    at += v.length + 1;
  });
  return out;
}

// The wall clock in nanoseconds, read once a round (a BigInt per call would
// cost more than the call).
let wallClock = BigInt(Date.now()) * 1_000_000n;
let requestHeaders = [];
let serialisedRequest = new Uint8Array(0);
const calls = {};
const changes = { add: [], remove: [], respond: [] };
let recording = false;
const count = (name) => { calls[name] = (calls[name] || 0) + 1; };
const forgetCalls = () => { for (const k of Object.keys(calls)) delete calls[k]; };

const host = {
  proxy_log: () => OK,
  proxy_get_log_level: (ret) => { dv().setUint32(ret, 2, true); return OK; },
  proxy_get_buffer_bytes: (type, start, max, retPtr, retSize) => {
    // 6: VM configuration, 7: plugin configuration.
    if (type === 7) return give(pluginConfig, retPtr, retSize);
    return NOT_FOUND;
  },
  proxy_get_header_map_pairs: (type, retPtr, retSize) => {
    count("get_header_map_pairs");
    return give(type === 0 ? serialisedRequest : serialise([]), retPtr, retSize);
  },
  proxy_get_header_map_value: (type, kPtr, kLen, retPtr, retSize) => {
    count("get_header_map_value");
    const name = text(kPtr, kLen);
    const hit = type === 0 && requestHeaders.find(([k]) => k === name);
    return hit ? give(te.encode(hit[1]), retPtr, retSize) : NOT_FOUND;
  },
  proxy_add_header_map_value: (type, kPtr, kLen, vPtr, vLen) => {
    count("add_header_map_value");
    if (recording) changes.add.push([text(kPtr, kLen), text(vPtr, vLen).slice(0, 40)]);
    return OK;
  },
  proxy_replace_header_map_value: () => { count("replace_header_map_value"); return OK; },
  proxy_remove_header_map_value: (type, kPtr, kLen) => {
    count("remove_header_map_value");
    if (recording) changes.remove.push(text(kPtr, kLen));
    return OK;
  },
  proxy_set_header_map_pairs: () => { count("set_header_map_pairs"); return OK; },
  proxy_get_current_time_nanoseconds: (ret) => {
    count("get_current_time_nanoseconds");
    dv().setBigUint64(ret, wallClock, true);
    return OK;
  },
  proxy_set_tick_period_milliseconds: () => OK,
  proxy_define_metric: (type, nPtr, nLen, ret) => {
    dv().setUint32(ret, 1 + (host.metrics = (host.metrics || 0) + 1), true);
    return OK;
  },
  proxy_increment_metric: () => { count("increment_metric"); return OK; },
  proxy_record_metric: () => { count("record_metric"); return OK; },
  proxy_get_metric: () => NOT_FOUND,
  proxy_get_shared_data: () => { count("get_shared_data"); return NOT_FOUND; },
  proxy_set_shared_data: () => { count("set_shared_data"); return OK; },
  proxy_http_call: (...args) => {
    count("http_call");
    dv().setUint32(args[args.length - 1], 1, true);
    return OK;
  },
  proxy_send_local_response: (status) => {
    count("send_local_response");
    if (recording) changes.respond.push(status);
    return OK;
  },
  proxy_get_property: () => NOT_FOUND,
  proxy_set_effective_context: () => OK,
  proxy_continue_stream: () => OK,
  proxy_close_stream: () => OK,
  proxy_done: () => OK,
};
const wasi = {
  random_get: (ptr, len) => { crypto.randomFillSync(u8().subarray(ptr, ptr + len)); return 0; },
  clock_time_get: (id, precision, ret) => {
    dv().setBigUint64(ret, process.hrtime.bigint(), true);
    return 0;
  },
  environ_sizes_get: (count, size) => { dv().setUint32(count, 0, true); dv().setUint32(size, 0, true); return 0; },
  environ_get: () => 0,
  fd_write: (fd, iovs, iovsLen, ret) => { dv().setUint32(ret, 0, true); return 0; },
  proc_exit: (code) => { throw new Error(`proc_exit(${code})`); },
};

const module = new WebAssembly.Module(fs.readFileSync(wasmPath));
const imports = { env: {}, wasi_snapshot_preview1: {} };
for (const imp of WebAssembly.Module.imports(module)) {
  const table = imp.module === "env" ? host : wasi;
  const own = table[imp.name];
  const name = imp.name.replace(/^proxy_/, "");
  // Every call is counted (those the table counts itself once).
  imports[imp.module][imp.name] = own
    ? (own.toString().includes("count(") ? own : (...a) => { count(name); return own(...a); })
    : (...a) => { count(name); return OK; };
}
ex = new WebAssembly.Instance(module, imports).exports;
ex._initialize?.();

const ROOT = 1;
ex.proxy_on_context_create(ROOT, 0);
ex.proxy_on_vm_start(ROOT, 0);
if (!ex.proxy_on_configure(ROOT, pluginConfig.length)) {
  console.error("the filter refused the plugin configuration");
  process.exit(1);
}

// One request's callbacks after its headers, in Envoy's order; Envoy skips
// those the module does not export.
const after = [
  ["proxy_on_response_headers", [1, 0]], ["proxy_on_response_body", [2, 1]],
  ["proxy_on_done", []], ["proxy_on_log", []], ["proxy_on_delete", []],
].filter(([name]) => ex[name]).map(([name, args]) => [ex[name], args]);

let next = ROOT + 1;
function request(i) {
  requestHeaders = [
    [":authority", "127.0.0.1:10000"], [":path", path], [":method", "GET"], [":scheme", "http"],
    ["accept", "application/json"], ["user-agent", "vm-bench"],
  ];
  if (cookies.length) requestHeaders.push(["cookie", cookies[i % cookies.length]]);
  serialisedRequest = serialise(requestHeaders);
  const id = next++;
  ex.proxy_on_context_create(id, ROOT);
  ex.proxy_on_request_headers(id, requestHeaders.length, 1);
  for (const [f, args] of after) f(id, ...args);
}

// What one request does (after a first one, which may fill a cache).
request(0);
recording = true;
forgetCalls();
request(0);
recording = false;
const perRequest = { ...calls };

// The serialised headers of each cookie, made before timing.
const prepared = (cookies.length ? cookies : [""]).map((_, i) => {
  request(i);
  return serialisedRequest;
});
forgetCalls();
const times = [];
for (let r = 0; r < rounds; r++) {
  wallClock = BigInt(Date.now()) * 1_000_000n;
  const start = process.hrtime.bigint();
  for (let i = 0; i < requests; i++) {
    serialisedRequest = prepared[i % prepared.length];
    const id = next++;
    ex.proxy_on_context_create(id, ROOT);
    ex.proxy_on_request_headers(id, 7, 1);
    for (const [f, args] of after) f(id, ...args);
  }
  times.push(Number(process.hrtime.bigint() - start) / requests);
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({
  ns_best: Math.round(times[0]),
  ns_median: Math.round(times[Math.floor(times.length / 2)]),
  hostcalls: perRequest,
  timed: { requests: rounds * requests, hostcalls: { ...calls } },
  changes,
}));
