// Where a hot path's CPU goes inside the Worker's isolate: a V8 CPU profile of `POST /v1/token`
// (or the proxy) under one connection of load, in workerd direct, through Miniflare's inspector
// (loopback). Prints self time by function (the Rust functions by name when the build keeps
// its name section) and by kind: the Worker's wasm, its JS glue, the runtime's own JS, V8's
// native frames and GC.
//
//   node bench/profile.mjs [--proxy] [--build DIR] [--seconds N] [--interval US]
//
// --build DIR: the Worker build to profile (default worker/build). For Rust names, build one
// whose wasm-opt keeps the name section, for example with WASM_OPT_BIN pointing at a script that
// copies its input to `-o` (worker-build's own wasm-opt strips nothing else that matters here).
// Sampling costs CPU itself (at 100 µs it about doubles a request's), so read the shares, not the
// absolute times.
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
// Node 20 has no WebSocket client of its own: `ws`, which Miniflare (a devDependency) depends on.
import WebSocket from "ws";
import { Browser, call, linkThroughSandbox, mintSession, putPartner } from "../tests/e2e/client.mjs";
import { ROOT, freePort } from "../tests/e2e/harness.mjs";
import { snapshot, startStack } from "./setups.mjs";

const argv = process.argv.slice(2);
const opt = (name, fallback) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : fallback);
const PROXY = argv.includes("--proxy");
const BUILD = resolve(opt("--build", `${ROOT}/worker/build`));
const SECONDS = Number(opt("--seconds", "6"));
const INTERVAL_US = Number(opt("--interval", "100"));
const run = promisify(execFile);

const snap = await snapshot({ before: BUILD });
const inspectorPort = await freePort();
// LOG_REQUESTS=all as deployed: with the inspector attached, V8 records every console line, which
// inflates the log line's share (it costs next to nothing without one; BENCHMARKS.md).
const stack = await startStack("direct", snap, { workerVars: { LOG_REQUESTS: "all" }, config: snap.beforeConfig, inspectorPort });
const scratch = await mkdtemp(join(tmpdir(), "keaplink-profile-"));
try {
  const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  const res = await call(stack.url, "POST", "/v1/me/connect", { token: await mintSession(acme, "bench-user"), body: {} });
  const linked = await linkThroughSandbox(new Browser(), stack.sandbox.url, res.json.authorize_url, { email: "ann@ab123.example" });
  if (!/Keap connected/.test(linked.final.text)) throw new Error("linking failed");
  const roomy = { limit: 1e12 };
  await stack.sandbox.quota({ product_quota: roomy, product_throttle: roomy, tenant_throttle: roomy });

  const wrkArgs = PROXY
    ? ["-H", `authorization: Bearer ${acme.api_key}`, "-H", "keaplink-user: bench-user", "-H", "keaplink-app: ab123", `${stack.url}/v1/keap/crm/rest/v1/contacts?limit=1`]
    : ["-s", await tokenScript(scratch, acme.api_key), `${stack.url}/v1/token`];
  const load = (secs) => run("wrk", ["-t", "1", "-c", "1", "-d", `${secs}s`, ...wrkArgs]);

  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json();
  // The Worker's own isolate (Miniflare names its user Workers core:user:<name>; bench/setups.mjs
  // names this one "bench"), not Miniflare's internal ones.
  const target = targets.find((t) => t.id === "core:user:bench") ?? (() => { throw new Error(`no inspector target core:user:bench: ${JSON.stringify(targets)}`); })();
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((ok, fail) => { ws.once("open", ok); ws.once("error", fail); });
  let nextId = 1;
  const pending = new Map();
  ws.on("message", (data) => {
    const msg = JSON.parse(data);
    if (msg.id && pending.has(msg.id)) {
      const { ok, fail } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) fail(new Error(`${msg.error.message} (${msg.error.code})`));
      else ok(msg);
    }
  });
  const send = (method, params = {}) => new Promise((ok, fail) => { const id = nextId++; pending.set(id, { ok, fail }); ws.send(JSON.stringify({ id, method, params })); });

  await load(2); // warm-up: JIT tiers, the isolate's caches
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: INTERVAL_US });
  await send("Profiler.start");
  const out = await load(SECONDS);
  const { result } = await send("Profiler.stop");
  ws.close();
  const requests = Number(/(\d+) requests in/.exec(out.stdout)?.[1] ?? 0);
  report(result.profile, requests);
} finally {
  await stack.stop();
  await snap.remove();
  await rm(scratch, { recursive: true, force: true });
}

/** wrk's script for the token path (it holds the API key: written to `dir`, removed after). */
async function tokenScript(dir, apiKey) {
  const path = join(dir, "token.lua");
  await writeFile(path, `wrk.method = "POST"\nwrk.body = '{"user":"bench-user","keap_app":"ab123"}'\nwrk.headers["content-type"] = "application/json"\nwrk.headers["authorization"] = "Bearer ${apiKey}"\n`, { mode: 0o600 });
  return path;
}

/** Self time by function and by kind, as shares of the samples that were not idle. */
function report(profile, requests) {
  const dt = profile.timeDeltas;
  const us = new Map();
  // Each sample's time is the delta to the next sample.
  profile.samples.forEach((id, i) => us.set(id, (us.get(id) ?? 0) + (dt[i + 1] ?? 0)));
  const byFn = new Map();
  const byKind = new Map();
  let busy = 0;
  for (const node of profile.nodes) {
    const t = us.get(node.id) ?? 0;
    if (!t) continue;
    const { functionName, url } = node.callFrame;
    if (functionName === "(idle)") continue;
    busy += t;
    const kind = url.startsWith("wasm://") ? "the Worker's wasm" : /index\.js|shim/.test(url) ? "its JS glue (wasm-bindgen, worker-build)" : functionName === "(garbage collector)" ? "V8's garbage collector" : functionName === "(program)" ? "V8 and the runtime, native" : url ? "the runtime's own JS" : "native functions called from JS";
    const name = `${functionName || "(anonymous)"}${url && !url.startsWith("wasm://") ? ` ${url.split("/").pop()}` : ""}`;
    byFn.set(name, (byFn.get(name) ?? 0) + t);
    byKind.set(kind, (byKind.get(kind) ?? 0) + t);
  }
  const pct = (t) => `${((100 * t) / busy).toFixed(1)} %`;
  console.log(`${PROXY ? "the proxy" : "POST /v1/token"}: ${requests} requests, ${(busy / 1000).toFixed(0)} ms of samples not idle (${(busy / Math.max(requests, 1)).toFixed(0)} µs a request, with the profiler's own cost)\n`);
  console.log("| kind | share |\n|---|---|");
  for (const [k, t] of [...byKind].sort((a, b) => b[1] - a[1])) console.log(`| ${k} | ${pct(t)} |`);
  console.log("\n| function (self time) | share |\n|---|---|");
  for (const [k, t] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`| ${k.slice(0, 110)} | ${pct(t)} |`);
}
