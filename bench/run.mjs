// keaplink's benchmarks, all in one run on one machine, each against a baseline measured in the
// same run and the same setup: a minimal Worker that reads one KV value and returns it
// (bench/baseline), and for the Keap proxy a bare pass-through (bench/passthrough). Writes
// BENCHMARKS.md and docs/bench-latency.svg + .png.
//
//   node bench/run.mjs [--quick] [--out DIR]   (scripts/bench builds first and runs this)
//   node bench/run.mjs --report-only [--out DIR]
//
// --quick: shorter load runs, fewer cold starts, no 100,000-connection sweep (seeding 100k into
// local KV takes ~8 min). --out: write the report there instead of the repository (for trial runs
// whose figures are not meant to be committed; the figures go there too). --report-only: rewrite
// the report from target/bench-results.json (or DIR's). Load comes from wrk on loopback, bounded
// in connections and time.
import { execFile, spawn } from "node:child_process";
import { readdir } from "node:fs/promises";
import { promisify } from "node:util";
import { mkdtemp, rm, readFile, writeFile, mkdir } from "node:fs/promises";
import { readFileSync, readdirSync } from "node:fs";
import { cpus, totalmem, tmpdir, release } from "node:os";
import { dirname, join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { ROOT, ADMIN_TOKEN, TOKEN_KEY } from "../tests/e2e/harness.mjs";
import { Browser, call, linkThroughSandbox, mintSession, putPartner, runSweep } from "../tests/e2e/client.mjs";
import { seedConnections, withLocalKv } from "../tests/e2e/seed.mjs";
import { startPartnerSite } from "../tests/e2e/partner.mjs";
import { launchBrowser } from "../tests/e2e/browser.mjs";
import { SETUPS, snapshot, startProbe, startStack } from "./setups.mjs";

const argv = process.argv.slice(2);
const QUICK = argv.includes("--quick");
// --hot: the hot paths in workerd direct only (the token path, the proxy, their baselines), the
// figures to target/bench-hot.json and a table to stdout; BENCHMARKS.md is left alone.
const HOT_ONLY = argv.includes("--hot");
// --cold: only the cold starts in workerd direct (figures to target/bench-cold.json, a line to stdout).
const COLD_ONLY = argv.includes("--cold");
// --before DIR: also measures another build of the Worker (DIR: a copy of an earlier worker/build)
// on the token path and the proxy, in the same run, right after this build's rows.
// --sweep N[,N...]: only the sweep over N links each (seeded straight into local KV's SQLite,
// bench/seed_kv.py: 1,000,000 links in minutes), the figures to target/bench-sweep.json and a
// table to stdout; BENCHMARKS.md is left alone. 1 in 1,000 links due.
const SWEEP_ONLY = argv.includes("--sweep") ? (argv[argv.indexOf("--sweep") + 1] ?? "").split(",").map(Number) : null;
if (SWEEP_ONLY && SWEEP_ONLY.some((n) => !(n >= 1000))) throw new Error("--sweep needs counts of at least 1000, comma-separated");
// --paired N (with --hot and --before): instead of one row each, N rounds in which the baseline,
// this build and the earlier one (then the pass-through from KV and both proxies) are loaded one
// after the other, the order turning each round; each round's ratios are taken, and their
// medians reported. On a machine other work shares, neighbours' load then falls on both sides of
// a ratio alike.
const PAIRED = argv.includes("--paired") ? Number(argv[argv.indexOf("--paired") + 1]) : 0;
const BEFORE = argv.includes("--before") ? resolve(argv[argv.indexOf("--before") + 1] ?? "") : null;
const OUT = argv.includes("--out") ? resolve(argv[argv.indexOf("--out") + 1] ?? "") : ROOT;
if (argv.includes("--out") && !argv[argv.indexOf("--out") + 1]) throw new Error("--out needs a folder");
const SECONDS = QUICK ? 5 : 10;
const WARMUP_SECONDS = 2;
// --connections N: wrk's open connections (default 4, on 2 threads; 1: one request at a time, on
// one thread: the latency of a request nobody queues behind, which is what a partner's single call
// waits, where at 4 the p50 also counts the requests queued ahead of it on the machine's two cores).
const CONNECTIONS = argv.includes("--connections") ? Number(argv[argv.indexOf("--connections") + 1]) : 4;
if (!(CONNECTIONS >= 1 && CONNECTIONS <= 16)) throw new Error("--connections needs 1 to 16");
const THREADS = Math.min(2, CONNECTIONS);
// Fresh workerd starts are cheap (a fifth of a second); wrangler dev starts are not (a second or more).
const DIRECT_STARTS = QUICK ? 5 : 11;
const WRANGLER_STARTS = 3;
const PROBE_ROUNDS = QUICK ? 10 : 25;
const PERCENTILES = [1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9];
// What the proxy rows fetch from the sandbox: a small JSON answer.
const KEAP_REST_PATH = "/crm/rest/v1/contacts?limit=1";
const RESULTS_FORMAT = 5;
const results = {
  format: RESULTS_FORMAT, date: new Date().toISOString(), settings: { quick: QUICK, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, connections: CONNECTIONS, threads: THREADS },
  load: [], proxy: {}, cold: {}, sizes: {}, widget: [], console: null, sweeps: [],
};
const log = (...a) => console.log(...a);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs wrk without blocking this process: its event loop must keep draining the output of the
 * processes it started (wrangler dev's log lines), or they would pile up behind the run.
 */
function wrk(args) {
  return new Promise((resolve, reject) => {
    const child = spawn("wrk", args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.once("error", reject);
    // "close", not "exit": the summary line may still be in the pipe when wrk has exited.
    child.once("close", (status) => resolve({ status, stdout, stderr }));
  });
}

/**
 * wrk against `url` (a short warm-up, then the measured run); returns percentiles (ms), rps and
 * CPU time per request of the worker's processes (`worker.cpu()` sampled around the measured run
 * only). `check(status, text)` vets one answer first, so a row never measures an error page.
 */
async function load({ setup, key, name, worker, url, method = "GET", body, headers = {}, check }) {
  const first = await fetch(url, { method, body, headers });
  const text = await first.text();
  const problem = check(first.status, text);
  if (problem) throw new Error(`${name}: ${problem} (status ${first.status}: ${text.slice(0, 200)})`);
  const dir = await mkdtemp(join(tmpdir(), "keaplink-bench-"));
  const script = join(dir, "s.lua");
  const hdrs = Object.entries(headers).map(([k, v]) => `wrk.headers["${k}"] = "${v}"`).join("\n");
  await writeFile(script, `
wrk.method = "${method}"
${body ? `wrk.body = '${body}'` : ""}
${hdrs}
done = function(summary, latency, requests)
  local ps = {}
  for _, p in ipairs({${PERCENTILES.join(",")}}) do ps[#ps + 1] = string.format('"%s":%.3f', p, latency:percentile(p) / 1000) end
  io.write(string.format('{"requests":%d,"non2xx":%d,"errors":%d,"rps":%.1f,"p":{%s}}\\n',
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6), table.concat(ps, ",")))
end
`, { mode: 0o600 });
  try {
    // Warm up (JIT, isolate, partner cache), then measure.
    await wrk(["-t", "1", "-c", "2", "-d", `${WARMUP_SECONDS}s`, "-s", script, url]);
    // Work queued by the warm-up (log lines after the answer) must not land in the measured window.
    await sleep(200);
    let cpu0, cpu1, r;
    // A socket error (a connection the shared machine's load timed out) spoils the row: run it
    // again, once.
    for (let attempt = 1; ; attempt++) {
      cpu0 = worker.cpu();
      const out = await wrk(["-t", String(THREADS), "-c", String(CONNECTIONS), "-d", `${SECONDS}s`, "-s", script, url]);
      await sleep(200);
      cpu1 = worker.cpu();
      if (out.status !== 0) throw new Error(`wrk failed: ${out.stderr}`);
      r = JSON.parse(out.stdout.trim().split("\n").at(-1));
      if (r.errors && !r.non2xx && attempt < 2) {
        log(`[${setup}] ${name}: ${r.errors} socket errors; measuring again`);
        continue;
      }
      break;
    }
    if (r.non2xx || r.errors) throw new Error(`${name}: ${r.non2xx} non-2xx, ${r.errors} socket errors of ${r.requests}`);
    const cpu = { workerd: (cpu1.workerd - cpu0.workerd) / r.requests, host: (cpu1.host - cpu0.host) / r.requests };
    const row = { setup, key, name, ...r, cpu };
    results.load.push(row);
    log(`[${setup}] ${name}: p50 ${r.p["50"]} ms, p99 ${r.p["99"]} ms, ${r.rps} req/s (${r.requests} requests), CPU/request: workerd ${cpu.workerd.toFixed(3)} ms, host ${cpu.host.toFixed(3)} ms`);
    return row;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const expectJson = (field) => (status, text) => {
  if (status !== 200) return "expected 200";
  try {
    return field in JSON.parse(text) ? null : `expected a JSON answer with "${field}"`;
  } catch {
    return "expected JSON";
  }
};

/** Writes the value the baseline reads into the local KV under `persistTo`. */
async function seedBaseline(persistTo) {
  await withLocalKv(persistTo, async (kv) => {
    // About the size of a connection record.
    const record = JSON.stringify({ access_token: "x".repeat(40), expires_at: "2026-11-23T00:00:00Z", keap_app: "ab123", pad: "y".repeat(600) });
    await kv.put("bench", record);
    // The JS floor (bench/baseline/worker.js) reads the record under a key it derives from the body.
    await kv.put("c/bench/bench-user/ab123", record);
  });
}

/**
 * The baseline Worker on the KV under `persistTo`, in `setup`; `bare`: without static assets in
 * front; `limits`: asking two rate limits first, as keaplink's token path does; `floor`: the
 * runtime work the token path cannot skip, done in JS (bench/baseline/worker.js, FLOOR).
 */
const startBaseline = (setup, snap, persistTo, { bare = false, limits = false, floor = false } = {}) =>
  SETUPS[setup].start({ config: bare ? snap.bareBaseline : limits ? snap.limitsBaseline : floor ? snap.floorBaseline : snap.baseline, persistTo });

// The floor is asked as the token path is: a POST with the user and app, and a key.
const FLOOR_REQUEST = { method: "POST", body: '{"user":"bench-user","keap_app":"ab123"}', headers: { "content-type": "application/json", authorization: "Bearer klk.bench" } };

async function loadBaseline(setup, snap, dir, key, name, opts = {}) {
  await seedBaseline(dir);
  const base = await startBaseline(setup, snap, dir, opts);
  try {
    return await load({ setup, key, name, worker: base, url: `${base.url}/`, ...(opts.floor ? FLOOR_REQUEST : {}), check: expectJson("access_token") });
  } finally {
    await base.stop();
  }
}

async function link(stack, partner, user, email) {
  const res = await call(stack.url, "POST", "/v1/me/connect", { token: await mintSession(partner, user), body: {} });
  const j = await linkThroughSandbox(new Browser(), stack.sandbox.url, res.json.authorize_url, { email });
  if (!/Keap connected/.test(j.final.text)) throw new Error(`link failed for ${email}`);
}

async function timed(fn) {
  const t0 = performance.now();
  const v = await fn();
  return [performance.now() - t0, v];
}

// ---- latency and CPU: baseline, ours, baseline, in one setup ---------------------------------
async function latency(setup, snap) {
  const baseDir = await mkdtemp(join(tmpdir(), "keaplink-baseline-"));
  try {
    await loadBaseline(setup, snap, baseDir, "baseline", "baseline: one KV read");

    const stack = await startStack(setup, snap, { workerVars: { LOG_REQUESTS: "all" } });
    try {
      const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
      for (const email of ["ann@ab123.example", "bob@cd456.example", "cat@ef789.example"]) await link(stack, acme, "bench-user", email);
      const tokenReq = { method: "POST", body: '{"user":"bench-user","keap_app":"ab123"}', headers: { "content-type": "application/json", authorization: `Bearer ${acme.api_key}` } };
      const refreshesBefore = (await stack.sandbox.stats()).calls.token_refresh ?? 0;
      await load({ setup, key: "token", name: "keaplink: POST /v1/token (fresh token)", worker: stack.worker, url: `${stack.url}/v1/token`, ...tokenReq, check: expectJson("access_token") });
      await load({ setup, key: "health", name: "keaplink: GET /healthz (no KV: the entry, the router and the log line)", worker: stack.worker, url: `${stack.url}/healthz`, check: expectJson("ok") });
      const session = await mintSession(acme, "bench-user", { exp: Math.floor(Date.now() / 1000) + 3500 });
      await load({ setup, key: "me", name: "keaplink: GET /v1/me/connections (3 links)", worker: stack.worker, url: `${stack.url}/v1/me/connections`, headers: { authorization: `Bearer ${session}`, origin: "https://acme.example" }, check: expectJson("connections") });
      // The proxy is measured where the Worker is measured for the goal: workerd direct.
      if (setup === "direct") results.proxy = await proxy(setup, snap, stack, acme, tokenReq);
      if (setup === "direct" && snap.beforeConfig) await beforeRows(setup, snap);
      results.refreshesDuringLoad = (results.refreshesDuringLoad ?? 0) + ((await stack.sandbox.stats()).calls.token_refresh ?? 0) - refreshesBefore;
    } finally {
      await stack.stop();
    }

    const quiet = await startStack(setup, snap, { workerVars: { LOG_REQUESTS: "errors" } });
    try {
      const acme2 = await putPartner(quiet.url, "acme", { origins: ["https://acme.example"] });
      await link(quiet, acme2, "bench-user", "ann@ab123.example");
      await load({
        setup, key: "token-quiet", name: "keaplink: POST /v1/token, LOG_REQUESTS=errors", worker: quiet.worker, url: `${quiet.url}/v1/token`,
        method: "POST", body: '{"user":"bench-user","keap_app":"ab123"}', headers: { "content-type": "application/json", authorization: `Bearer ${acme2.api_key}` },
        check: expectJson("access_token"),
      });
    } finally {
      await quiet.stop();
    }

    await loadBaseline(setup, snap, baseDir, "baseline-again", "baseline: one KV read (again)");
    await loadBaseline(setup, snap, baseDir, "limits", "reference: the baseline asking two rate limits first, as keaplink does", { limits: true });
    await loadBaseline(setup, snap, baseDir, "bare", "reference: the baseline without static assets in front", { bare: true });
    await loadBaseline(setup, snap, baseDir, "floor", "reference: the token path's runtime work, in JS", { floor: true });
  } finally {
    await rm(baseDir, { recursive: true, force: true });
  }
}

/** `--before`: the earlier build's token path and proxy, on a stack of its own. */
async function beforeRows(setup, snap) {
  const stack = await startStack(setup, snap, { workerVars: { LOG_REQUESTS: "all" }, config: snap.beforeConfig });
  try {
    const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
    await link(stack, acme, "bench-user", "ann@ab123.example");
    const headers = { "content-type": "application/json", authorization: `Bearer ${acme.api_key}` };
    await load({ setup, key: "token-before", name: "before: POST /v1/token (fresh token)", worker: stack.worker, url: `${stack.url}/v1/token`, method: "POST", body: '{"user":"bench-user","keap_app":"ab123"}', headers, check: expectJson("access_token") });
    if (typeof stack.sandbox.quota === "function") {
      const roomy = { limit: 1e12 };
      await stack.sandbox.quota({ product_quota: roomy, product_throttle: roomy, tenant_throttle: roomy });
    }
    const oursHeaders = { authorization: `Bearer ${acme.api_key}`, "keaplink-user": "bench-user", "keaplink-app": "ab123" };
    await load({ setup, key: "proxy-before", name: `before: GET /v1/keap${KEAP_REST_PATH}`, worker: stack.worker, url: `${stack.url}/v1/keap${KEAP_REST_PATH}`, headers: oursHeaders, check: (status) => (status === 200 ? null : "expected 200") });
  } finally {
    await stack.stop();
  }
}

/** `--hot`: the rows measured, as a table (p50 against the baselines of the same run). */
function hotTable() {
  const fx = (v, d = 2) => v.toFixed(d);
  const db = baselineOf("direct");
  const passKv = rowOf("direct", "passthroughKv");
  const lines = ["| run | p50 ms | p99 ms | req/s | p50 vs baseline | vs pass-through from KV | CPU ms/req, workerd |", "|---|---|---|---|---|---|---|"];
  for (const r of results.load.filter((x) => x.setup === "direct")) {
    const proxyish = ["passthrough", "passthroughKv", "proxy", "proxy-before"].includes(r.key);
    const vsBase = proxyish ? "" : `${fx(r.p["50"] / db.p50)}×`;
    const vsPass = proxyish && passKv ? `${fx(r.p["50"] / passKv.p["50"])}×` : "";
    lines.push(`| ${r.name} | ${fx(r.p["50"])} | ${fx(r.p["99"])} | ${r.rps.toFixed(0)} | ${vsBase} | ${vsPass} | ${fx(r.cpu.workerd, 3)} |`);
  }
  return lines.join("\n");
}

// ---- the Keap proxy: ours vs a bare pass-through, to the sandbox's REST API -------------------
/**
 * Measures `GET /v1/keap/<KEAP_REST_PATH>` against bench/passthrough relaying to the same sandbox
 * URL. Returns `{ skipped: reason }` instead when the sandbox has no such route or keaplink has
 * no proxy route (both are being written: the bench must run before and after).
 */
async function proxy(setup, snap, stack, partner, tokenReq) {
  const skip = (reason) => {
    log(`[${setup}] proxy rows skipped: ${reason}`);
    return { skipped: reason };
  };
  const upstream = `${stack.sandbox.url}${KEAP_REST_PATH}`;
  // The sandbox enforces Keap's quotas (1,500 calls a minute per client): a load run spends that
  // in about a second, and every call after it would be a 429. The bench measures relaying, not
  // throttling, so it lifts them where the sandbox has them (sandboxes without quotas skip this).
  if (typeof stack.sandbox.quota === "function") {
    const roomy = { limit: 1e12 };
    try {
      await stack.sandbox.quota({ product_quota: roomy, product_throttle: roomy, tenant_throttle: roomy });
    } catch (err) {
      // An older sandbox: no quota control, and no REST API either (found out just below).
      log(`[${setup}] the sandbox's quotas could not be lifted: ${err.message.split("\n")[0]}`);
    }
  }
  const token = await call(stack.url, "POST", "/v1/token", { token: partner.api_key, body: JSON.parse(tokenReq.body) });
  if (token.status !== 200) throw new Error(`POST /v1/token answered ${token.status} before the proxy rows`);
  const keapAuth = { authorization: `Bearer ${token.json.access_token}` };
  const direct = await fetch(upstream, { headers: keapAuth });
  const directText = await direct.text();
  if (direct.status === 404) return skip(`the sandbox has no REST route \`GET ${KEAP_REST_PATH}\` (it answered 404)`);
  if (direct.status !== 200) return skip(`the sandbox answered ${direct.status} to \`GET ${KEAP_REST_PATH}\` with a fresh access token`);

  const oursUrl = `${stack.url}/v1/keap${KEAP_REST_PATH}`;
  const oursHeaders = { authorization: `Bearer ${partner.api_key}`, "keaplink-user": "bench-user", "keaplink-app": "ab123" };
  const ours = await fetch(oursUrl, { headers: oursHeaders });
  const oursText = await ours.text();
  if (ours.status !== 200) {
    let code = "no error code";
    try {
      code = JSON.parse(oursText).error.code;
    } catch {
      // Not keaplink's error body: a relayed answer.
    }
    const why = ours.status === 404 && code === "not_found" ? ": this build has no proxy route" : "";
    return skip(`keaplink answered ${ours.status} (\`${code}\`) to \`GET /v1/keap${KEAP_REST_PATH}\`${why}`);
  }
  if (oursText !== directText) return skip("keaplink's answer through the proxy differs from the sandbox's own answer");

  const sameAnswer = (status, text) => (status !== 200 ? "expected 200" : text === directText ? null : "expected the sandbox's answer, relayed as it is");
  const pass = await SETUPS[setup].start({ config: snap.passthrough, vars: { UPSTREAM_URL: upstream } });
  const kvDir = await mkdtemp(join(tmpdir(), "keaplink-passthrough-kv-"));
  try {
    try {
      await load({ setup, key: "passthrough", name: `pass-through: GET ${KEAP_REST_PATH}`, worker: pass, url: `${pass.url}/`, headers: keapAuth, check: sameAnswer });
    } finally {
      await pass.stop();
    }
    // The same, reading the token from KV first: a record about the size of a connection's.
    await withLocalKv(kvDir, async (kv) => {
      await kv.put("bench", JSON.stringify({ access_token: token.json.access_token, expires_at: token.json.expires_at, keap_app: "ab123", pad: "y".repeat(600) }));
    });
    const passKv = await SETUPS[setup].start({ config: snap.passthrough, vars: { UPSTREAM_URL: upstream, TOKEN_FROM_KV: "1" }, persistTo: kvDir });
    try {
      await load({ setup, key: "passthroughKv", name: `pass-through, token read from KV: GET ${KEAP_REST_PATH}`, worker: passKv, url: `${passKv.url}/`, check: sameAnswer });
    } finally {
      await passKv.stop();
    }
    await load({ setup, key: "proxy", name: `keaplink: GET /v1/keap${KEAP_REST_PATH}`, worker: stack.worker, url: oursUrl, headers: oursHeaders, check: sameAnswer });
    return { upstream: KEAP_REST_PATH, bytes: Buffer.byteLength(directText) };
  } catch (err) {
    // A sandbox that throttles (Keap's quotas) or fails under load makes the rows meaningless.
    results.load = results.load.filter((r) => !(r.setup === setup && ["passthrough", "passthroughKv", "proxy"].includes(r.key)));
    return skip(`the proxy load failed: ${err.message.split("\n")[0]}`);
  } finally {
    await rm(kvDir, { recursive: true, force: true });
  }
}

// ---- cold start -------------------------------------------------------------------------------
/** Spawning `wrangler dev` to its first 200 (the harness polls /healthz every 250 ms). */
/**
 * `timed(start)`, started again (up to three times) when its port was taken between being picked
 * and being bound, by another process on this shared machine; only the start that worked is timed.
 */
async function timedStart(start) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await timed(start);
    } catch (err) {
      if (attempt === 3 || !/address already in use/i.test(err.message)) throw err;
      log(`a wrangler dev start found its port taken; starting again (attempt ${attempt + 1})`);
    }
  }
}

async function coldWrangler(snap) {
  const dir = await mkdtemp(join(tmpdir(), "keaplink-cold-"));
  const ours = [];
  const base = [];
  try {
    // Seeded once, outside the timed starts (it opens the KV through a Miniflare of its own).
    await seedBaseline(dir);
    for (let i = 0; i < WRANGLER_STARTS; i++) {
      const [msBase, b] = await timedStart(() => startBaseline("wrangler", snap, dir));
      await b.stop();
      base.push(msBase);
      const [msOurs, w] = await timedStart(() => SETUPS.wrangler.start({ config: snap.config, persistTo: dir, secrets: { KEAP_CLIENT_ID: "x", KEAP_CLIENT_SECRET: "y", TOKEN_KEYS: TOKEN_KEY, ADMIN_TOKEN } }));
      await w.stop();
      ours.push(msOurs);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  results.cold.wrangler = { ours: median(ours), baseline: median(base), oursAll: ours, baselineAll: base };
  log(`cold start, wrangler dev (spawn → first 200), median of ${WRANGLER_STARTS}: ours ${median(ours).toFixed(0)} ms, baseline ${median(base).toFixed(0)} ms`);
}

/**
 * A fresh workerd (through Miniflare) per start, timed from the call to its first answer: ready
 * (workerd listening, every Worker loaded: modules evaluated, wasm compiled and instantiated) and
 * then the first request of that isolate. The kinds take turns: the baseline on its own config,
 * the baseline's script under keaplink's config (the same bindings to set up as ours), the same
 * carrying our wasm as a compiled module it never instantiates, and ours.
 */
async function coldDirect(snap) {
  const dir = await mkdtemp(join(tmpdir(), "keaplink-cold-"));
  const secrets = { KEAP_CLIENT_ID: "x", KEAP_CLIENT_SECRET: "y", TOKEN_KEYS: TOKEN_KEY, ADMIN_TOKEN };
  const kinds = {
    baseline: { config: snap.baseline, path: "/" },
    bindings: { config: snap.coldVariants.bindings, path: "/" },
    compiled: { config: snap.coldVariants.compiled, path: "/" },
    ours: { config: snap.config, path: "/healthz", secrets },
    // As deployed, a request's isolate is the front's (the objects are a Worker of their own).
    ...(snap.frontCold ? { front: { config: snap.frontCold, path: "/healthz", secrets } } : {}),
  };
  const runs = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]));
  const once = async (kind) => {
    const { config, path, secrets: s = {} } = kinds[kind];
    const t0 = performance.now();
    const w = await SETUPS.direct.start({ config, persistTo: dir, secrets: s });
    const ready = performance.now();
    try {
      const res = await fetch(`${w.url}${path}`);
      await res.text();
      if (res.status !== 200) throw new Error(`cold start (${kind}): the first answer was ${res.status}`);
      const end = performance.now();
      // A fresh process: all the CPU it has used is its start and this first answer.
      runs[kind].push({ total: end - t0, ready: ready - t0, first: end - ready, workerdCpu: w.cpu().workerd });
    } finally {
      await w.stop();
    }
  };
  try {
    await seedBaseline(dir);
    for (let i = 0; i < DIRECT_STARTS; i++) for (const kind of Object.keys(kinds)) await once(kind);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const summary = (xs) => ({
    ...Object.fromEntries(["total", "ready", "first", "workerdCpu"].map((k) => [k, median(xs.map((x) => x[k]))])),
    all: xs.map((x) => x.total),
  });
  results.cold.direct = Object.fromEntries(Object.entries(runs).map(([k, xs]) => [k, summary(xs)]));
  const c = results.cold.direct;
  log(`cold start, workerd direct (start → first answer), median of ${DIRECT_STARTS}: ${Object.entries(c).map(([k, v]) => `${k} ${v.total.toFixed(0)} ms`).join(", ")}`);
}

/**
 * The Worker's wasm compiled and instantiated in workerd's own V8 (bench/wasm-probe), timed from
 * outside: each round asks for /copy (bytes only), /compile, /instantiate (compile + instantiate)
 * with fresh bytes, and /compile with the same bytes every time (what V8's module cache saves).
 * CPU per compile comes from workerd's utime + stime (compiler threads count), over a run of
 * compiles less a run of copies.
 */
async function wasmProbe(snap) {
  const probe = await startProbe(snap);
  const t = { copy: [], compile: [], instantiate: [], same: [] };
  const ask = async (path) => {
    const t0 = performance.now();
    const res = await fetch(`${probe.url}${path}`);
    const text = await res.text();
    if (res.status !== 200) throw new Error(`wasm probe ${path}: ${res.status} ${text.slice(0, 200)}`);
    return performance.now() - t0;
  };
  let compileCpu;
  try {
    await ask("/compile?i=warm-up");
    for (let i = 0; i < PROBE_ROUNDS; i++) {
      t.copy.push(await ask(`/copy?i=c${i}`));
      t.compile.push(await ask(`/compile?i=m${i}`));
      t.instantiate.push(await ask(`/instantiate?i=n${i}`));
      t.same.push(await ask("/compile?i=same"));
    }
    // CPU in runs of one kind: /proc counts in 10 ms ticks, too coarse for one request.
    const c0 = probe.cpu().workerd;
    for (let i = 0; i < PROBE_ROUNDS; i++) await ask(`/compile?i=cpu${i}`);
    const c1 = probe.cpu().workerd;
    for (let i = 0; i < PROBE_ROUNDS; i++) await ask(`/copy?i=cpu${i}`);
    const c2 = probe.cpu().workerd;
    compileCpu = (c1 - c0 - (c2 - c1)) / PROBE_ROUNDS;
  } finally {
    await probe.stop();
  }
  const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)]));
  results.cold.wasm = {
    rounds: PROBE_ROUNDS,
    compileMs: m.compile - m.copy,
    instantiateMs: m.instantiate - m.compile,
    sameBytesCompileMs: m.same - m.copy,
    compileCpuMs: compileCpu,
    medians: m,
  };
  const w = results.cold.wasm;
  log(`wasm in workerd, median of ${PROBE_ROUNDS}: compile ${w.compileMs.toFixed(2)} ms (CPU ${w.compileCpuMs.toFixed(1)} ms), instantiate ${w.instantiateMs.toFixed(2)} ms, compile of the same bytes again ${w.sameBytesCompileMs.toFixed(2)} ms`);
}

// ---- sizes -------------------------------------------------------------------------------------
async function sizes(snap) {
  const size = async (files) => {
    let raw = 0;
    let gz = 0;
    for (const f of files) {
      const b = await readFile(f);
      raw += b.length;
      gz += gzipSync(b, { level: 9 }).length;
    }
    return { raw, gz };
  };
  const workerWasm = readdirSync(snap.workerBuild).filter((f) => f.endsWith(".wasm")).map((f) => join(snap.workerBuild, f));
  const widgetDir = join(snap.assets, "widget");
  const widget = readdirSync(widgetDir).filter((f) => /\.(wasm|js)$/.test(f)).map((f) => join(widgetDir, f));
  const consoleDir = join(snap.assets, "console");
  const consoleFiles = readdirSync(consoleDir).filter((f) => /\.(wasm|js)$/.test(f)).map((f) => join(consoleDir, f));
  results.sizes = {
    worker: await size(workerWasm),
    widget: await size(widget),
    console: await size(consoleFiles),
    baseline: await size([join(snap.dir, "bench", "baseline", "worker.js")]),
    passthrough: await size([join(snap.dir, "bench", "passthrough", "worker.js")]),
  };
  log(`sizes: worker wasm ${results.sizes.worker.raw} B (${results.sizes.worker.gz} gzip), widget ${results.sizes.widget.raw} B (${results.sizes.widget.gz} gzip)`);
}

// ---- where the Worker's bytes go ---------------------------------------------------------------
// The Worker built again with its function names (v0 mangling spells out generic parameters), in
// a target folder of its own so the shipped build is untouched, and charged to crates and areas
// by scripts/size-attribution.py. This is the module after wasm-bindgen, before wasm-opt: sizes
// differ from the shipped file, the shares hardly.
async function attribution() {
  const env = { ...process.env, KEAPLINK_WASM_NAMES: "1", RUSTFLAGS: "-Csymbol-mangling-version=v0", CARGO_TARGET_DIR: join(ROOT, "target", "size-names") };
  const run = promisify(execFile);
  const started = performance.now();
  await run("cargo", ["build", "--locked", "--release", "--target", "wasm32-unknown-unknown", "-p", "keaplink-worker"], { cwd: ROOT, env, maxBuffer: 64 << 20 });
  const linked = join(ROOT, "target", "size-names", "wasm32-unknown-unknown", "release", "keaplink_worker.wasm");
  // wasm-bindgen demangles the names and takes out its own sections, as in the shipped build.
  const bg = join(ROOT, "target", "size-names", "bindgen");
  await run("wasm-bindgen", [linked, "--out-dir", bg, "--target", "bundler"], { maxBuffer: 16 << 20 });
  const wasm = join(bg, "keaplink_worker_bg.wasm");
  const { stdout } = await run("python3", [join(ROOT, "scripts", "size-attribution.py"), wasm, "--top", "15"], { maxBuffer: 16 << 20 });
  // Its tables, in order: sections, code by area, the largest functions.
  const tables = stdout.trim().split(/\n\s*\n/);
  results.attribution = { sections: tables[0], areas: tables[1], largest: tables[2], raw: readFileSync(wasm).length };
  log(`attribution: ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

// ---- widget --------------------------------------------------------------------------------------
async function widget(snap) {
  const stack = await startStack("wrangler", snap);
  const site = await startPartnerSite({ workerUrl: stack.url });
  const partner = await putPartner(stack.url, "acme", { origins: [site.url], returnUrls: [`${site.url}/settings`] });
  site.setPartner(partner);
  const browser = await launchBrowser();
  try {
    for (let i = 0; i < 5; i++) {
      const page = await browser.newPage();
      await page.goto(`${site.url}/settings?user=bench-${i}`);
      await page.locator("keap-link [data-state=empty]").waitFor();
      const ms = await page.evaluate(() => {
        const script = performance.getEntriesByType("resource").find((e) => e.name.endsWith("/widget/keap-link.js"));
        return performance.getEntriesByName("keaplink:first-status")[0].startTime - script.startTime;
      });
      results.widget.push(ms);
      await page.close();
    }
  } finally {
    await browser.close();
    await site.stop();
    await stack.stop();
  }
  log(`widget, script load → first rendered status: ${results.widget.map((m) => m.toFixed(0)).join(", ")} ms`);
}

// ---- console ---------------------------------------------------------------------------------------
const CONSOLE_LINKS = 10_000;

/**
 * The console at CONSOLE_LINKS links of one partner (seeded into local KV with the search index),
 * under wrangler dev: five sign-ins, each from the click on "Sign in" to the first row of links
 * visible (the budget is 1 s), then four pages forward and one search, as the browser's user
 * waits for them.
 */
async function consoleAtScale(snap) {
  const dir = await mkdtemp(join(tmpdir(), "keaplink-console-"));
  const stack = await startStack("wrangler", snap, { persistTo: dir });
  const browser = await launchBrowser();
  try {
    const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
    await stack.worker.stop();
    // Nothing due: no sweep or refresh competes with the console for the cores.
    await seedConnections({ persistTo: dir, sandbox: stack.sandbox, partner: "acme", count: CONSOLE_LINKS, dueEvery: CONSOLE_LINKS, marginSecs: 21600, index: true });
    await stack.restartWorker();
    const page = await browser.newPage({ viewport: { width: 1180, height: 820 } });
    const signIns = [];
    for (let i = 0; i < 5; i++) {
      await page.goto(`${stack.url}/console/`);
      await page.getByLabel("API key").fill(acme.api_key);
      const [ms] = await timed(async () => {
        await page.getByRole("button", { name: "Sign in" }).click();
        await page.locator("#results tbody tr").first().waitFor();
      });
      signIns.push(ms);
      if (i < 4) {
        await page.getByRole("button", { name: "Sign out" }).click();
        await page.getByLabel("API key").waitFor();
      }
    }
    const nextPages = [];
    for (let p = 2; p <= 5; p++) {
      const [ms] = await timed(async () => {
        await page.getByRole("button", { name: "Next page" }).click();
        await page.locator(".pager span", { hasText: `Page ${p}` }).waitFor();
      });
      nextPages.push(ms);
    }
    const [searchMs] = await timed(async () => {
      await page.getByLabel("Search").fill("seed-00012");
      await page.getByRole("button", { name: "Search" }).click();
      await page.waitForFunction(() => document.querySelectorAll("#results tbody tr").length === 10);
    });
    results.console = { links: CONSOLE_LINKS, signIns, nextPages, searchMs };
    log(`console, ${CONSOLE_LINKS} links: sign-in → first row ${signIns.map((m) => m.toFixed(0)).join(", ")} ms; next page ${nextPages.map((m) => m.toFixed(0)).join(", ")} ms; search ${searchMs.toFixed(0)} ms`);
  } finally {
    await browser.close();
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- sweeps ----------------------------------------------------------------------------------------
/**
 * `seedConnections`, but straight into the stopped Worker's local KV files: keaplink-seed's lines
 * piped into bench/seed_kv.py, which writes Miniflare's SQLite table and blob files in one
 * transaction. Links not due get one shared unreadable value (the sweep reads none; the e2e
 * sweep test proves it with the same trap).
 */
async function seedFast({ persistTo, sandbox, partner, count, dueEvery, marginSecs }) {
  const due = Math.ceil(count / dueEvery);
  const { tokens } = await sandbox.seed("ann@ab123.example", due);
  // Miniflare makes the namespace's table and blob folder on its first write.
  await withLocalKv(persistTo, (kv) => kv.put("bench/seeded", "1"));
  const kvRoot = join(persistTo, "v3", "kv");
  const objects = join(kvRoot, "miniflare-KVNamespaceObject");
  const dbs = (await readdir(objects)).filter((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite");
  if (dbs.length !== 1) throw new Error(`expected one KV namespace database in ${objects}, found ${dbs.join(", ")}`);
  const input = { partner, token_keys: TOKEN_KEY, now: Math.floor(Date.now() / 1000), count, due_every: dueEvery, margin_secs: marginSecs, tokens, unreadable_idle: true };
  const seed = spawn(join(ROOT, "target", "debug", "keaplink-seed"), { stdio: ["pipe", "pipe", "inherit"] });
  const py = spawn("python3", [join(ROOT, "bench", "seed_kv.py"), join(objects, dbs[0]), join(kvRoot, "keaplink-local", "blobs")], { stdio: ["pipe", "pipe", "inherit"] });
  seed.stdout.pipe(py.stdin);
  seed.stdin.end(JSON.stringify(input));
  let out = "";
  py.stdout.on("data", (d) => (out += d));
  const exit = (p) => new Promise((res) => p.once("close", res));
  const [a, b] = await Promise.all([exit(seed), exit(py)]);
  if (a !== 0 || b !== 0) throw new Error(`seeding failed (keaplink-seed ${a}, seed_kv.py ${b})`);
  return { written: JSON.parse(out).rows, due };
}

async function sweep(snap, count, dueEvery, { fast = false } = {}) {
  const dir = await mkdtemp(join(tmpdir(), "keaplink-sweep-"));
  const stack = await startStack("wrangler", snap, { persistTo: dir, workerVars: { SWEEP_SUBREQUEST_BUDGET: "5000" } });
  try {
    await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
    await stack.worker.stop();
    const seeder = fast ? seedFast : seedConnections;
    const [seedMs, seeded] = await timed(() => seeder({ persistTo: dir, sandbox: stack.sandbox, partner: "acme", count, dueEvery, marginSecs: 21600 }));
    await stack.restartWorker();
    const before = (await stack.sandbox.stats()).calls.token_refresh ?? 0;
    const cpu0 = stack.worker.cpu?.();
    const [wallMs, report] = await timed(() => runSweep(stack.worker, { timeoutMs: 1_800_000 }));
    const cpu1 = stack.worker.cpu?.();
    const keap = ((await stack.sandbox.stats()).calls.token_refresh ?? 0) - before;
    const row = {
      count, due: seeded.due, seedMs, wallMs, keapCalls: keap, fastSeed: fast,
      // workerd's CPU over the sweep (both of wrangler dev's workerd processes: local KV, the
      // guards and the Worker), an upper bound of what the invocation itself used.
      workerdCpuMs: cpu0 && cpu1 ? cpu1.workerd - cpu0.workerd : null,
      queueSends: report.queue_sends, enqueued: report.enqueued, paced: report.paced,
      subrequests: report.kv_list_calls + report.guard_calls + report.queue_sends,
      listCalls: report.kv_list_calls, sweepValueReads: report.kv_value_reads, guardCalls: report.guard_calls,
      // Each refreshed guard reads its record from KV once (first use) and writes it back once.
      guardKvReads: report.refreshed + report.still_failing + report.needs_reauth, kvWrites: report.refreshed + report.still_failing + report.needs_reauth,
      refreshed: report.refreshed, errors: report.errors, complete: report.complete, reportMs: report.duration_ms,
    };
    results.sweeps.push(row);
    log(`sweep ${count} (${seeded.due} due, seeded in ${(seedMs / 1000).toFixed(0)} s): ${(wallMs / 1000).toFixed(1)} s, ${row.listCalls} list calls, ${row.sweepValueReads} value reads by the sweep, ${row.guardCalls} guard calls, ${row.queueSends} queue sends, ${row.subrequests} subrequests, ${row.keapCalls} Keap calls, errors ${row.errors}, workerd CPU ${row.workerdCpuMs} ms`);
  } finally {
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- report ------------------------------------------------------------------------------------
const rowOf = (setup, key) => results.load.find((r) => r.setup === setup && r.key === key);

/** The mean of a setup's two baseline runs (before and after ours). */
function baselineOf(setup) {
  const b1 = rowOf(setup, "baseline");
  const b2 = rowOf(setup, "baseline-again");
  return { p50: (b1.p["50"] + b2.p["50"]) / 2, rps: (b1.rps + b2.rps) / 2, cpu: (b1.cpu.workerd + b2.cpu.workerd) / 2 };
}

const SERIES_STYLE = [
  { setup: "direct", key: "token", color: "#2f6fdd" },
  { setup: "direct", key: "me", color: "#1a9e55" },
  { setup: "direct", key: "baseline", color: "#777777" },
  { setup: "wrangler", key: "token", color: "#2f6fdd", dash: "6 4" },
  { setup: "wrangler", key: "baseline", color: "#777777", dash: "6 4" },
];

function svgPlot() {
  const series = SERIES_STYLE.map((s) => ({ ...s, row: rowOf(s.setup, s.key) })).filter((s) => s.row);
  const W = 760, H = 420, L = 70, R = 20, T = 40, B = 60;
  const shown = PERCENTILES.filter((p) => p <= 99);
  // Log scale: the p50s of workerd direct sit near a millisecond, the tails near a hundred.
  const all = series.flatMap((s) => shown.map((p) => s.row.p[String(p)]));
  const lo = Math.log10(Math.max(0.1, Math.min(...all) * 0.8));
  const hi = Math.log10(Math.max(...all) * 1.1);
  const x = (ms) => L + ((Math.log10(Math.max(ms, 10 ** lo)) - lo) / (hi - lo)) * (W - L - R);
  const y = (p) => T + (1 - p / 100) * (H - T - B);
  const paths = series.map((s, i) => {
    const pts = shown.map((p) => `${x(s.row.p[String(p)]).toFixed(1)},${y(p).toFixed(1)}`);
    const label = `${SETUPS[s.setup].title}: ${s.row.name.replace(/^keaplink: /, "")} (p50 ${s.row.p["50"].toFixed(1)} ms)`;
    const ly = H - B - 16 - (series.length - 1 - i) * 18;
    return `<polyline fill="none" stroke="${s.color}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""} points="${pts.join(" ")}"/>` +
      `<line x1="${W - R - 34}" y1="${ly - 4}" x2="${W - R - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>` +
      `<text x="${W - R - 40}" y="${ly}" fill="#222" font-size="12" text-anchor="end">${label}</text>`;
  });
  const ticks = [];
  const marks = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000].filter((ms) => Math.log10(ms) >= lo && Math.log10(ms) <= hi);
  for (const ms of marks) ticks.push(`<line x1="${x(ms)}" y1="${H - B}" x2="${x(ms)}" y2="${H - B + 5}" stroke="#333"/><text x="${x(ms)}" y="${H - B + 20}" font-size="12" text-anchor="middle">${ms}</text>`);
  for (const p of [0, 25, 50, 75, 90, 99]) ticks.push(`<line x1="${L - 5}" y1="${y(p)}" x2="${W - R}" y2="${y(p)}" stroke="#eee"/><text x="${L - 8}" y="${y(p) + 4}" font-size="12" text-anchor="end">p${p}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="22" font-size="15" text-anchor="middle">Latency distribution, ${results.settings.connections} connections: workerd direct (solid), wrangler dev (dashed), ${results.date.slice(0, 10)}</text>
${ticks.join("\n")}
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>
<text x="${(L + W - R) / 2}" y="${H - 18}" font-size="13" text-anchor="middle">latency (ms, log scale)</text>
${paths.join("\n")}
</svg>`;
}

async function renderPng(svgPath, pngPath) {
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 760, height: 420 } });
    await page.goto(`file://${svgPath}`);
    await page.screenshot({ path: pngPath });
  } finally {
    await browser.close();
  }
}

function machine() {
  const cpu = cpus();
  const version = (pkg) => JSON.parse(readFileSync(join(ROOT, "node_modules", pkg, "package.json"), "utf8")).version;
  return `${cpu.length} × ${cpu[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}, wrangler ${version("wrangler")}, Miniflare ${version("miniflare")}, workerd ${version("workerd")}`;
}

function writeReportText() {
  const { quick, seconds, warmupSeconds, connections, threads } = results.settings;
  const fx = (v, d = 2) => v.toFixed(d);
  // A difference of two noisy figures: under 0.01 ms (or negative) is below what the run resolves.
  const cost = (v, what) => (v < 0.01 ? `no measurable ${what} (${fx(v)} ms)` : `${fx(v)} ms of ${what}`);
  const kb = (n) => `${n.toLocaleString("en-US")} B`;
  const cpuCell = (v) => (Number.isFinite(v) ? fx(v, 3) : "n/a");
  const table = (setup, keys, against) => {
    const rows = keys.map((k) => rowOf(setup, k)).filter(Boolean);
    return rows.map((r) => `| ${r.name} | ${fx(r.p["50"])} | ${fx(r.p["99"])} | ${r.rps.toFixed(0)} | ${fx(r.p["50"] / against.p50)}× | ${fx(r.rps / against.rps)}× | ${cpuCell(r.cpu.workerd)} | ${cpuCell(r.cpu.host)} |`).join("\n");
  };
  const HEADER = "| run | p50 ms | p99 ms | req/s | p50 vs baseline | req/s vs baseline | CPU ms/req, workerd | CPU ms/req, Node |\n|---|---|---|---|---|---|---|---|";
  const HOT = ["baseline", "token", "token-before", "health", "me", "token-quiet", "baseline-again", "limits", "bare", "floor"];
  const wb = baselineOf("wrangler");
  const db = baselineOf("direct");
  const ratio = (setup, key) => rowOf(setup, key).p["50"] / baselineOf(setup).p50;
  const cpuOf = (setup, key) => rowOf(setup, key).cpu;
  const goal = ratio("direct", "token");
  const verdict = goal <= 1.2 ? "met" : "not met";
  const wbc = { host: (rowOf("wrangler", "baseline").cpu.host + rowOf("wrangler", "baseline-again").cpu.host) / 2, workerd: wb.cpu };
  const dbc = { host: (rowOf("direct", "baseline").cpu.host + rowOf("direct", "baseline-again").cpu.host) / 2, workerd: db.cpu };
  const wt = cpuOf("wrangler", "token");
  const wq = cpuOf("wrangler", "token-quiet");
  const dt = cpuOf("direct", "token");
  const dq = cpuOf("direct", "token-quiet");
  const s = results.sizes;
  const cw = results.cold.wrangler;
  const cd = results.cold.direct;
  const wasm = results.cold.wasm;
  const px = results.proxy;
  const proxySection = px.skipped
    ? `Not measured in this run: ${px.skipped}. The rows appear once keaplink serves
\`/v1/keap/...\` and the sandbox answers \`GET ${KEAP_REST_PATH}\`; nothing else needs changing.`
    : (() => {
      const pass = rowOf("direct", "passthrough");
      const passKv = rowOf("direct", "passthroughKv");
      const ours = rowOf("direct", "proxy");
      const r = ours.p["50"] / pass.p["50"];
      const row = (x) => `| ${x.name} | ${fx(x.p["50"])} | ${fx(x.p["99"])} | ${x.rps.toFixed(0)} | ${fx(x.p["50"] / pass.p["50"])}× | ${fx(x.rps / pass.rps)}× | ${cpuCell(x.cpu.workerd)} |`;
      return `| run | p50 ms | p99 ms | req/s | p50 vs pass-through | req/s vs pass-through | CPU ms/req, workerd |
|---|---|---|---|---|---|---|
${[pass, passKv, ours].filter(Boolean).map(row).join("\n")}

Goal: keaplink's proxy p50 within 1.2× of the bare pass-through: **${fx(r)}×** (${r <= 1.2 ? "met" : "not met"}).${passKv ? ` The second
row is the floor of any proxy that keeps its tokens in KV: the same pass-through, reading a
record from local KV for its token first (${fx(passKv.p["50"] / pass.p["50"])}× alone). Against it keaplink's proxy is
${fx(ours.p["50"] / passKv.p["50"])}×, and adds ${fx(ours.p["50"] - passKv.p["50"])} ms at p50: the API key's check, two rate-limiter calls (nearly free
here: see the "asking two rate limits" row above), unsealing the token, the path and header rules,
reading Keap's quota headers and the log line.` : ""}
Both relay to the same sandbox URL (a ${px.bytes} B JSON answer), in workerd direct, one after the other;
the sandbox (a debug build of \`crates/sandbox\`) answers both and shares the two cores, so what
differs is the Worker in front. The pass-through forwards method, headers and body to a fixed URL
and returns the answer; keaplink also does what the API reference asks of every proxied call
(the API key, the user's connection and its token, the path and header rules, its log line).`;
    })();
  return `# Benchmarks

Written by \`node bench/run.mjs${quick ? " --quick" : ""}\` (README: \`./scripts/bench\`) on ${results.date.slice(0, 10)}, in one run of ${(results.durationSecs / 60).toFixed(0)} minutes on one machine:
${results.machine}. Everything runs on loopback, with wrk as the load generator (${connections} connections,
${threads} threads, ${seconds} s after a ${warmupSeconds} s warm-up). The wrk threads and the Worker share the machine's
cores, so absolute figures are this machine's; the ratios are the point.

**Two setups**, each with its own baseline, measured in the same run:

- **workerd direct**: the built Worker (\`worker/build\`) in workerd, started by Miniflare from a
  Node script with the bindings wrangler derives from \`wrangler.toml\` (KV, Durable Objects,
  queues, rate limiters, vars, \`[assets]\` in front), and nothing else on the request path:
  Miniflare's request logging is off and workerd's console output goes straight to a file, so
  no Node process handles a request or a log line. This is the setup that reflects production,
  where the runtime itself collects console output (Workers Logs, \`wrangler tail\`).
- **wrangler dev**: the same Worker under local \`wrangler dev\`, as the e2e tests run it. Every
  request also passes wrangler's proxy Worker (a second workerd), which has wrangler's Node
  process print a line for it (\`[wrangler:info] POST /v1/token 200 OK\`), and every
  \`console.log\` record of workerd is parsed, source-mapped and printed again by that Node
  process, on the same two cores as the load.

Both load the same files, copied to a temp folder at the start of the run (a rebuild mid-run
cannot change them), with the rate limits raised as in the e2e tests (else the load measures
429s). **Baseline**: \`bench/baseline/worker.js\`, a Worker in the same setup that reads one KV
value (~700 B) and returns it: no auth, no parsing, no crypto. Its config has the same shape as
keaplink's (\`[assets]\` in front: every request first passes the asset router, one more hop);
the last row of each table shows it without that hop, for reference. It was measured before and
after ours; ratios are against the mean of the two (workerd direct: p50 ${fx(db.p50)} ms, ${db.rps.toFixed(0)} req/s;
wrangler dev: p50 ${fx(wb.p50)} ms, ${wb.rps.toFixed(0)} req/s).

## Hot paths

### workerd direct

${HEADER}
${table("direct", HOT, db)}

### wrangler dev

${HEADER}
${table("wrangler", HOT, wb)}

Goal: \`POST /v1/token\` p50 within 1.2× of the baseline with a log line for every request (the
default), in the setup that reflects production: **${fx(goal)}×** in workerd direct (${verdict}),
${fx(ratio("direct", "token-quiet"))}× there with \`LOG_REQUESTS=errors\`. Under wrangler dev the same Worker is at
${fx(ratio("wrangler", "token"))}× with the log line and ${fx(ratio("wrangler", "token-quiet"))}× without.${kept("hot-path-runs")}${rowOf("direct", "limits") && rowOf("direct", "health") ? `

Where the token path's time goes, in workerd direct (each row is one 10 s run on a shared
2-core machine; between runs of this benchmark the same row has moved by up to 15 %, so rows that
close are not told apart here): \`GET /healthz\`, which reads
nothing (keaplink's entry, router and log line, behind the same asset router), is
${fx(ratio("direct", "health"))}× the baseline; the baseline's script asking two rate limits as keaplink's token path does
(through local workerd's emulation of the binding) is ${fx(ratio("direct", "limits"))}×. The token path adds
${fx(rowOf("direct", "token").p["50"] - rowOf("direct", "health").p["50"])} ms to \`/healthz\`: the KV read (the baseline's whole work), the two rate limits, the
API key's hash, the body, unsealing and the answer.` : ""}

Why the setups differ: the CPU columns. Under wrangler dev even the baseline costs
${fx(wbc.host)} ms of Node CPU and ${fx(wbc.workerd - dbc.workerd)} ms more workerd CPU per request than in workerd direct (the proxy
Worker and its request line): a fixed cost on both sides of every ratio, which hides part of what
the Worker itself costs. On top of it, the log line for every request costs ${fx(wt.host - wq.host)} ms of Node CPU
per request (wrangler's process: ${fx(wt.host)} ms per request with \`LOG_REQUESTS=all\`, ${fx(wq.host)} ms with
\`errors\`) and ${fx(wt.workerd - wq.workerd)} ms of workerd CPU. In workerd direct the same line costs ${cost(dt.workerd - dq.workerd, "workerd CPU")}
per request and Node does nothing (${fx(dt.host, 3)} ms: this script, idle). The line is written
after the answer (\`waitUntil\`), so what it costs is CPU taken from the two cores the load runs on,
not waiting. What keaplink's token path adds to the baseline, in workerd direct: ${fx(dt.workerd - dbc.workerd)} ms of
workerd CPU per request (${fx(dq.workerd - dbc.workerd)} ms without the log line).

**CPU ms/req**: the utime + stime of the processes (every thread, from \`/proc/<pid>/stat\`)
over the measured run and 0.2 s after it (work it left behind, such as log lines), divided by the
requests wrk completed. *workerd*: the workerd process
(wrangler dev: both of its workerd processes, the Worker's and the proxy's); it includes the HTTP
server, Miniflare's entry Worker, the asset router, local KV and rate-limiter emulation (a
Durable Object and SQLite in the same process), V8's compiler and GC threads, as well as the
Worker. *Node*: wrangler's Node process (and its esbuild) under wrangler dev; this script,
Miniflare's host, in workerd direct. The difference between a row and its baseline is what
keaplink's own code adds; on Cloudflare, KV and rate limits are served outside the isolate.
Keap saw ${results.refreshesDuringLoad} refresh calls during the keaplink runs (all tokens were fresh).
What the token path does per request: 2 rate-limiter calls (the address's in parallel with the key
check, the partner's in parallel with the connection read), the partner record from the isolate cache (a KV read every 30 s), the API key's
SHA-256, one KV read of the connection, one JSON log line. \`/v1/me/connections\` verifies an HS256
JWT, checks the origin and lists the user's connections from KV metadata (one list call).

![latency distribution](docs/bench-latency.png)
${kept("hook-posts")}
## Keap proxy

\`GET /v1/keap${KEAP_REST_PATH}\` (\`keaplink-user\`, \`keaplink-app\`, the partner's API key) against
\`bench/passthrough/worker.js\`, a Worker that forwards the request to a fixed upstream URL and
returns the answer (it is sent a valid access token; it checks nothing), in workerd direct.

${proxySection}

## Cold start

What the Worker's size costs a cold isolate, in workerd direct. **Start → first answer**: a
fresh workerd per start (through Miniflare), timed from the start call to the first 200 (ours
\`/healthz\`, the others \`/\`), the kinds taking turns, median of ${cd.ours.all.length} each. The start covers
Miniflare's own set-up, handing workerd its config and modules, and workerd loading every Worker
and binding (evaluating the modules, compiling and instantiating wasm, setting up the Durable
Object, queue and rate-limiter services) until it listens; the first answer is that isolate's
first request, which also pays for compiling the wasm functions it runs (V8 compiles a wasm
function's body on its first call). From the second row on, each row adds one thing to the one
above: keaplink's config (its bindings, the baseline's script with stub Durable Object classes),
then our ${kb(s.worker.raw)} of wasm as a module workerd loads and compiles but nothing instantiates,
then keaplink itself (the JS glue, instantiating and starting the wasm). Each "adds" is the
difference of two medians, so it is only as good as the spread of "all starts" below. *workerd CPU*: all the CPU the fresh workerd process
used until its first answer was out (\`/proc\` counts it in 10 ms ticks); the rest of the time
is spent outside it: spawning the process, and Miniflare, in this script's Node process, building
the config and handing it over, which has no counterpart on Cloudflare.

| | start → first answer | adds | until listening | first request | workerd CPU |
|---|---|---|---|---|---|
${[
    ["baseline (its own config: one KV binding)", cd.baseline, null],
    ["baseline's script, keaplink's bindings", cd.bindings, cd.baseline],
    ["… and our wasm compiled, not instantiated", cd.compiled, cd.bindings],
    ["keaplink (both halves in one wasm)", cd.ours, cd.compiled],
    ...(cd.front ? [["keaplink's front alone, as deployed (every route; the objects are a Worker of their own)", cd.front, null]] : []),
  ].map(([label, r, prev]) => `| ${label} | ${r.total.toFixed(0)} ms | ${prev ? `${(r.total - prev.total).toFixed(0)} ms` : ""} | ${r.ready.toFixed(0)} ms | ${fx(r.first, 1)} ms | ${r.workerdCpu.toFixed(0)} ms |`).join("\n")}

All starts (ms): ${Object.entries({ keaplink: cd.ours, "with our wasm compiled": cd.compiled, "keaplink's bindings": cd.bindings, baseline: cd.baseline }).map(([k, v]) => `${k} ${v.all.map((m) => m.toFixed(0)).join(", ")}`).join("; ")}.

**The wasm alone**, in workerd's own V8 (\`bench/wasm-probe\`; Node's V8 is older and cannot
compile it): compiling the Worker's wasm takes **${fx(wasm.compileMs)} ms** (${fx(wasm.compileCpuMs, 1)} ms of workerd CPU,
compiler threads included) and instantiating it ${fx(wasm.instantiateMs)} ms, median of ${wasm.rounds}, timed from outside
against a request that builds the same bytes but compiles nothing. This compile is what V8 does
before the first call (decoding and validating the module; function bodies come on first call,
as above). Each compile gets bytes no
isolate has seen (a custom section with a counter), as a cold isolate does; the same bytes
compiled again take ${fx(wasm.sameBytesCompileMs)} ms (V8 keeps compiled modules by their bytes). The
baseline has no wasm. It runs through workerd's unsafe-eval binding, because workerd, like
Cloudflare, compiles no wasm from bytes while serving; the compiler and its flags are those that
compile a Worker's own wasm module.

**wrangler dev**: spawning it to the first 200, median of ${cw.oursAll.length} (ours ${cw.oursAll.map((m) => m.toFixed(0)).join(", ")} ms,
baseline ${cw.baselineAll.map((m) => m.toFixed(0)).join(", ")} ms; /healthz polled every 250 ms). It includes wrangler's own start-up, which dominates.

| | ms | vs baseline |
|---|---|---|
| baseline | ${cw.baseline.toFixed(0)} | 1.00× |
| keaplink | ${cw.ours.toFixed(0)} | ${fx(cw.ours / cw.baseline)}× |
${kept("cold-start-runs")}
## Sizes

| artifact | raw | gzip |
|---|---|---|
| Worker wasm | ${kb(s.worker.raw)} | ${kb(s.worker.gz)} |
| widget (wasm + glue JS + element JS) | ${kb(s.widget.raw)} | ${kb(s.widget.gz)} (budget 40,960) |
| console (wasm + glue JS + page JS) | ${kb(s.console.raw)} | ${kb(s.console.gz)} (budget 81,920) |
| baseline Worker (JS) | ${kb(s.baseline.raw)} | ${kb(s.baseline.gz)} |
| pass-through Worker (JS) | ${kb(s.passthrough.raw)} | ${kb(s.passthrough.gz)} |

Cloudflare's limit on a Worker bundle: 3 MiB gzip (free), 10 MiB (paid); \`scripts/test\` prints the
deploy dry-run's own figure. ${s.worker.gz > 250 * 1024 ? `**The Worker's wasm is over its goal of 250 KB gzip** (${kb(s.worker.gz)} of ${kb(250 * 1024)})` : `The Worker's wasm is within its goal of 250 KB gzip (${kb(s.worker.gz)} of ${kb(250 * 1024)})`}: what
was cut on the way from 433 KB, what the rest is and what would take it further is in
\`docs/wasm-size.md\`.

### Where the Worker's bytes go

The Worker built again with its function names (\`KEAPLINK_WASM_NAMES=1\`, v0 symbol mangling) and
read by \`scripts/size-attribution.py\`: the module after wasm-bindgen (${kb(results.attribution.raw)} with its names),
before wasm-opt, which takes it to the ${kb(s.worker.raw)} above. Every function body is charged to
one area: an async body inlined into the JS promise adapter to the module it was written in (so
\`keaplink_worker\`'s entry points hold the routes LLVM inlined into them); a serde impl naming one of
our types to "serde derive"; otherwise the first crate its name names.

${results.attribution.sections}

${results.attribution.areas}

The largest functions:

${results.attribution.largest}

## Widget

Script load (\`keap-link.js\` resource start) to the first rendered status (\`keaplink:first-status\`
mark), headless Chromium, the partner page on its own loopback origin under a strict CSP, 5 page
loads: ${results.widget.map((m) => m.toFixed(0)).join(", ")} ms (median ${median(results.widget).toFixed(0)} ms). It includes
compiling the wasm and one \`GET /v1/me/connections\` (wrangler dev).

## Console

\`/console/\` under wrangler dev with ${results.console.links.toLocaleString("en-US")} links of one partner in local KV (seeded with
their search index), headless Chromium. Sign-in to the first page of links on screen (from the
click on "Sign in" to the first row visible; it includes \`GET /v1/partner\` and the first
\`GET /v1/connections\`), 5 sign-ins: ${results.console.signIns.map((m) => m.toFixed(0)).join(", ")} ms (median **${median(results.console.signIns).toFixed(0)} ms**; budget 1 s).
Next page: ${results.console.nextPages.map((m) => m.toFixed(0)).join(", ")} ms (one request each, however deep). A search
(\`seed-00012\`, a prefix of ten partner user ids) to its ten rows: ${results.console.searchMs.toFixed(0)} ms.

## Sweep

One cron invocation (\`SWEEP_SUBREQUEST_BUDGET=5000\`) under wrangler dev over connections seeded
straight into local KV, sealed by keaplink-core (\`keaplink-seed\`); ${results.sweeps.map((w) => `1 in ${w.count / w.due} (${w.count / 1000}k)`).join(" or ")} due.

| connections | due | wall time | KV list calls | KV values read by the sweep | KV reads by guards¹ | KV writes¹ | Keap calls | errors | seeding |
|---|---|---|---|---|---|---|---|---|---|
${[...results.sweeps, ...millionSweeps()].map((w) => `| ${w.count.toLocaleString("en-US")}${w.fastSeed ? "²" : ""} | ${w.due.toLocaleString("en-US")} | ${(w.wallMs / 1000).toFixed(1)} s | ${w.listCalls} | ${w.sweepValueReads} | ${w.guardKvReads.toLocaleString("en-US")} | ${w.kvWrites.toLocaleString("en-US")} | ${w.keapCalls.toLocaleString("en-US")} | ${w.errors} | ${(w.seedMs / 1000).toFixed(0)} s |`).join("\n")}

The sweep decides from list metadata alone (1,000 keys per call); each due connection costs one
guard call, one KV read on the guard's first use, one Durable Object storage write, one KV write
and one Keap call. Measured: wall time, list calls and the sweep's own value reads (the sweep's
report), Keap calls (the sandbox's counter), errors. ¹ Derived, not counted: local KV keeps no
counters; one read (first use of the guard) and one write per guard that refreshed or recorded
a failure.${millionSweeps().length ? ` ² \`node bench/run.mjs --sweep 1000000\` (its figures kept in
\`bench/sweep-1m.json\`, run on ${millionSweeps()[0].date.slice(0, 10)}): seeded by piping \`keaplink-seed\` into \`bench/seed_kv.py\`, which writes
Miniflare's KV table and blob files in one transaction (links not due share one unreadable value,
as in the e2e sweep test), 1 in 1,000 due. One invocation: ${millionSweeps()[0].subrequests.toLocaleString("en-US")} subrequests (list calls and
guard calls), ${millionSweeps()[0].queueSends} queue messages, ${(millionSweeps()[0].workerdCpuMs / 1000).toFixed(1)} s of workerd CPU (both of wrangler dev's workerd processes over the
sweep: the Worker, local KV's emulation and the guards' refreshes; an upper bound of what the
invocation itself would use on Cloudflare, where KV is served elsewhere).` : ""} Gzip sizes here are Node's zlib at level 9 (\`scripts/sizes\` uses gzip -9; they differ by
up to 1.5 %: Node's deflate makes other choices).
${keepaliveSimSection()}${importsSection()}`;
}

/** The bulk import's figures, from `node bench/imports.mjs` (target/bench-imports.json). */
function importsSection() {
  const r = results.imports;
  if (!r) return "";
  const api = Object.entries(r.api_calls).map(([route, n]) => `${route} ${n.toLocaleString("en-US")}`).join(", ");
  return `
## Bulk import

\`node bench/imports.mjs\`: ${r.links.toLocaleString("en-US")} links (ten calls of 1,000, minted by the
sandbox as another integration of the same OAuth client holds them, spread over its five Keap
apps) imported into a fresh deployment under wrangler dev at the default pace
(\`KEAP_REFRESH_RATE_PER_MIN=${r.rate_per_min}\`, two calls an item).

| items per minute | Keap calls per item | refreshes | other Keap calls | outcomes |
|---|---|---|---|---|
| ${r.items_per_minute.toLocaleString("en-US")} (${r.minutes} min) | ${r.keap_calls_per_item} | ${r.refreshes.toLocaleString("en-US")} | ${api} | ${Object.entries(r.outcomes).filter(([, n]) => n).map(([k, n]) => `${k} ${n.toLocaleString("en-US")}`).join(", ")} |
`;
}

/** The link-keeping simulation's figures (not measured by this run: `bench/keepalive-sim.md`,
 * written from `cargo run --release -p keaplink-core --example keepalive_sim`). */
/** The million-link sweep, measured apart (`--sweep`, minutes of seeding) and kept in the repo. */
function millionSweeps() {
  try {
    const saved = JSON.parse(readFileSync(join(ROOT, "bench", "sweep-1m.json"), "utf8"));
    return saved.sweeps.map((w) => ({ ...w, date: saved.date }));
  } catch {
    return [];
  }
}

function keepaliveSimSection() {
  try {
    return `\n${readFileSync(join(ROOT, "bench", "keepalive-sim.md"), "utf8")}`;
  } catch {
    return "";
  }
}

/**
 * Sections of BENCHMARKS.md that other programs' figures or a session's measurements wrote
 * (bench/hooks.mjs's, `--hot --paired`, `--cold` runs): between `<!-- kept: ID -->` and
 * `<!-- /kept: ID -->`, read back before the report is written again and put where the template
 * says `kept(ID)`, so a full run never drops them.
 */
const keptBlocks = {};
async function readKept() {
  // A trial run (--out) keeps the repository's sections until it has its own.
  const text = await readFile(join(OUT, "BENCHMARKS.md"), "utf8").catch(() => readFile(join(ROOT, "BENCHMARKS.md"), "utf8")).catch(() => "");
  for (const m of text.matchAll(/<!-- kept: ([a-z0-9-]+) -->\n([\s\S]*?)\n<!-- \/kept: \1 -->/g)) keptBlocks[m[1]] = m[2];
}
const kept = (id) => (keptBlocks[id] ? `\n\n<!-- kept: ${id} -->\n${keptBlocks[id]}\n<!-- /kept: ${id} -->\n` : "");

async function writeReport() {
  await readKept();
  try {
    results.imports = JSON.parse(await readFile(join(ROOT, "target", "bench-imports.json"), "utf8"));
  } catch { /* not run: no section */ }
  await mkdir(join(OUT, "docs"), { recursive: true });
  await writeFile(join(OUT, "BENCHMARKS.md"), writeReportText());
  const svg = join(OUT, "docs", "bench-latency.svg");
  await writeFile(svg, svgPlot());
  await renderPng(svg, join(OUT, "docs", "bench-latency.png"));
  log(`wrote ${join(OUT, "BENCHMARKS.md")}, docs/bench-latency.svg, docs/bench-latency.png`);
}

// A trial run (--out) keeps its figures beside its report, away from the last real run's.
const RESULTS = OUT === ROOT ? join(ROOT, "target", "bench-results.json") : join(OUT, "bench-results.json");
/** `--paired`: the rounds described at the top. */
async function paired(snap, rounds) {
  const setup = "direct";
  const baseDir = await mkdtemp(join(tmpdir(), "keaplink-baseline-"));
  await seedBaseline(baseDir);
  const base = await startBaseline(setup, snap, baseDir);
  const stacks = {
    after: await startStack(setup, snap, { workerVars: { LOG_REQUESTS: "all" } }),
    before: await startStack(setup, snap, { workerVars: { LOG_REQUESTS: "all" }, config: snap.beforeConfig }),
  };
  const kvDir = await mkdtemp(join(tmpdir(), "keaplink-passthrough-kv-"));
  const floorDir = await mkdtemp(join(tmpdir(), "keaplink-floor-"));
  let passKv, floor;
  try {
    await seedBaseline(floorDir);
    floor = await startBaseline(setup, snap, floorDir, { floor: true });
    const targets = {
      baseline: { worker: base, url: `${base.url}/`, check: expectJson("access_token") },
      floor: { worker: floor, url: `${floor.url}/`, ...FLOOR_REQUEST, check: expectJson("access_token") },
    };
    for (const [k, stack] of Object.entries(stacks)) {
      const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
      await link(stack, acme, "bench-user", "ann@ab123.example");
      const roomy = { limit: 1e12 };
      await stack.sandbox.quota({ product_quota: roomy, product_throttle: roomy, tenant_throttle: roomy });
      targets[`token-${k}`] = { worker: stack.worker, url: `${stack.url}/v1/token`, method: "POST", body: '{"user":"bench-user","keap_app":"ab123"}', headers: { "content-type": "application/json", authorization: `Bearer ${acme.api_key}` }, check: expectJson("access_token") };
      targets[`proxy-${k}`] = { worker: stack.worker, url: `${stack.url}/v1/keap${KEAP_REST_PATH}`, headers: { authorization: `Bearer ${acme.api_key}`, "keaplink-user": "bench-user", "keaplink-app": "ab123" }, check: (status) => (status === 200 ? null : "expected 200") };
      if (k === "after") {
        const token = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "bench-user", keap_app: "ab123" } });
        await withLocalKv(kvDir, (kv) => kv.put("bench", JSON.stringify({ access_token: token.json.access_token, expires_at: token.json.expires_at, keap_app: "ab123", pad: "y".repeat(600) })));
        passKv = await SETUPS[setup].start({ config: snap.passthrough, vars: { UPSTREAM_URL: `${stack.sandbox.url}${KEAP_REST_PATH}`, TOKEN_FROM_KV: "1" }, persistTo: kvDir });
        targets.passthroughKv = { worker: passKv, url: `${passKv.url}/`, check: (status) => (status === 200 ? null : "expected 200") };
      }
    }
    const groups = [["baseline", "floor", "token-after", "token-before"], ["passthroughKv", "proxy-after", "proxy-before"]];
    const rows = [];
    for (let r = 0; r < rounds; r++) {
      const round = {};
      for (const g of groups) {
        const order = g.map((_, i) => g[(i + r) % g.length]);
        for (const key of order) {
          const row = await load({ setup, key: `${key}#${r}`, name: `${key} (round ${r + 1})`, ...targets[key] });
          round[key] = row;
        }
      }
      rows.push(round);
      const x = (k, of) => (round[k].p["50"] / round[of].p["50"]).toFixed(2);
      const c = (k, of) => (round[k].cpu.workerd / round[of].cpu.workerd).toFixed(2);
      log(`round ${r + 1}: p50 token ${x("token-after", "baseline")}× (before ${x("token-before", "baseline")}×, the JS floor ${x("floor", "baseline")}×), proxy ${x("proxy-after", "passthroughKv")}× (before ${x("proxy-before", "passthroughKv")}×); CPU token ${c("token-after", "baseline")}× (before ${c("token-before", "baseline")}×, floor ${c("floor", "baseline")}×), proxy ${c("proxy-after", "passthroughKv")}× (before ${c("proxy-before", "passthroughKv")}×)`);
    }
    const med = (f) => median(rows.map(f));
    const ratios = (of, keys, measure) => Object.fromEntries(keys.map((k) => [k, med((x) => measure(x[k]) / measure(x[of]))]));
    const p50 = (row) => row.p["50"];
    const cpu = (row) => row.cpu.workerd;
    results.paired = {
      rounds,
      connections: CONNECTIONS,
      token: { after: med((x) => x["token-after"].p["50"] / x.baseline.p["50"]), before: med((x) => x["token-before"].p["50"] / x.baseline.p["50"]) },
      proxy: { after: med((x) => x["proxy-after"].p["50"] / x.passthroughKv.p["50"]), before: med((x) => x["proxy-before"].p["50"] / x.passthroughKv.p["50"]) },
      // Each row against its baseline, round by round, then the median: p50 and CPU per request.
      vsBaseline: { p50: ratios("baseline", ["floor", "token-after", "token-before"], p50), cpu: ratios("baseline", ["floor", "token-after", "token-before"], cpu) },
      vsPassKv: { p50: ratios("passthroughKv", ["proxy-after", "proxy-before"], p50), cpu: ratios("passthroughKv", ["proxy-after", "proxy-before"], cpu) },
      cpu: Object.fromEntries(Object.keys(targets).map((k) => [k, med((x) => x[k].cpu.workerd)])),
      p50: Object.fromEntries(Object.keys(targets).map((k) => [k, med((x) => x[k].p["50"])])),
      rps: Object.fromEntries(Object.keys(targets).map((k) => [k, med((x) => x[k].rps)])),
    };
  } finally {
    await passKv?.stop();
    await floor?.stop();
    await base.stop();
    for (const s of Object.values(stacks)) await s.stop();
    await rm(baseDir, { recursive: true, force: true });
    await rm(kvDir, { recursive: true, force: true });
    await rm(floorDir, { recursive: true, force: true });
  }
}

function pairedTable() {
  const p = results.paired;
  const fx = (v, d = 2) => v.toFixed(d);
  const lines = [`Medians of ${p.rounds} rounds, ${p.connections} connection(s):`, "", "| run | p50 ms | req/s | CPU ms/req, workerd | p50, round by round vs its baseline | CPU, same |", "|---|---|---|---|---|---|"];
  const vs = (k) => (p.vsBaseline.p50[k] !== undefined ? [p.vsBaseline.p50[k], p.vsBaseline.cpu[k]] : p.vsPassKv.p50[k] !== undefined ? [p.vsPassKv.p50[k], p.vsPassKv.cpu[k]] : null);
  for (const k of Object.keys(p.p50)) {
    const v = vs(k);
    lines.push(`| ${k} | ${fx(p.p50[k])} | ${p.rps[k].toFixed(0)} | ${fx(p.cpu[k], 3)} | ${v ? `${fx(v[0])}×` : ""} | ${v ? `${fx(v[1])}×` : ""} |`);
  }
  lines.push("", `POST /v1/token p50 vs the baseline: ${fx(p.token.after)}× (the earlier build: ${fx(p.token.before)}×)`);
  lines.push(`proxy p50 vs the pass-through reading its token from KV: ${fx(p.proxy.after)}× (the earlier build: ${fx(p.proxy.before)}×)`);
  return lines.join("\n");
}

/**
 * One measuring mode of this program (not the full run): `measure` on a fresh snapshot, the
 * figures to target/FILE (or --out's folder); answers the file's path.
 */
async function measureOnly(file, measure, snapshotOptions = {}) {
  const started = performance.now();
  results.machine = machine();
  const snap = await snapshot(snapshotOptions);
  try {
    await measure(snap);
  } finally {
    await snap.remove();
  }
  results.durationSecs = (performance.now() - started) / 1000;
  const out = OUT === ROOT ? join(ROOT, "target", file) : join(OUT, file);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify(results, null, 2));
  return out;
}

if (SWEEP_ONLY) {
  const out = await measureOnly("bench-sweep.json", async (snap) => {
    for (const n of SWEEP_ONLY) await sweep(snap, n, 1000, { fast: true });
  });
  log(`${results.machine}, ${results.date}\nwrote ${out}`);
} else if (HOT_ONLY && PAIRED) {
  if (!BEFORE) throw new Error("--paired needs --before DIR");
  const out = await measureOnly("bench-paired.json", (snap) => paired(snap, PAIRED), { before: BEFORE });
  log(`\n${results.machine}, ${results.date}\n${pairedTable()}\nwrote ${out}`);
} else if (HOT_ONLY) {
  const out = await measureOnly("bench-hot.json", (snap) => latency("direct", snap), { before: BEFORE });
  log(`\n${results.machine}, ${results.date}\n${hotTable()}\nwrote ${out}`);
} else if (COLD_ONLY) {
  const out = await measureOnly("bench-cold.json", (snap) => coldDirect(snap));
  const c = results.cold.direct;
  const front = c.front ? `the front (as deployed) ${(c.front.total / c.baseline.total).toFixed(2)}×, ` : "(no worker/build-front: run scripts/build worker for the front's row) ";
  log(`\n${results.machine}\nstart → first answer vs the baseline: ${front}the whole Worker in one wasm ${(c.ours.total / c.baseline.total).toFixed(2)}×\nwrote ${out}`);
} else if (argv.includes("--report-only")) {
  // Rewrites BENCHMARKS.md and the plot from the last run's figures (no measuring).
  Object.assign(results, JSON.parse(await readFile(RESULTS, "utf8")));
  if (results.format !== RESULTS_FORMAT) throw new Error(`${RESULTS} was written by an older bench/run.mjs: run the benchmarks again`);
  await writeReport();
} else {
  const started = performance.now();
  results.machine = machine();
  const snap = await snapshot();
  try {
    for (const setup of Object.keys(SETUPS)) await latency(setup, snap);
    await coldDirect(snap);
    await wasmProbe(snap);
    await coldWrangler(snap);
    await sizes(snap);
    await attribution();
    await widget(snap);
    await consoleAtScale(snap);
    await sweep(snap, 10_000, 10);
    if (!QUICK) await sweep(snap, 100_000, 100);
  } finally {
    await snap.remove();
  }
  results.durationSecs = (performance.now() - started) / 1000;
  await mkdir(dirname(RESULTS), { recursive: true });
  await writeFile(RESULTS, JSON.stringify(results, null, 2));
  await writeReport();
  log(`bench: ${results.durationSecs.toFixed(0)} s`);
}
