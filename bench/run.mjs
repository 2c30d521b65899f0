// keaplink's benchmarks, all in one run on one machine, each against a baseline measured in the
// same run: a minimal Worker in the same workerd that reads one KV value and returns it
// (bench/baseline). Writes BENCHMARKS.md and docs/bench-latency.svg + .png.
//
//   node bench/run.mjs [--quick]      (scripts/bench builds first and runs this)
//
// --quick: 5 s load runs and no 100,000-connection sweep (seeding 100k into local KV takes ~10 min).
// Load comes from wrk on loopback, bounded in connections and time.
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, readFile, writeFile, mkdir, stat } from "node:fs/promises";
import { readFileSync, readdirSync } from "node:fs";
import { cpus, totalmem, tmpdir, release } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { ROOT, startStack, startWorker, ADMIN_TOKEN } from "../tests/e2e/harness.mjs";
import { Browser, call, linkThroughSandbox, mintSession, putPartner, runSweep } from "../tests/e2e/client.mjs";
import { seedConnections, withLocalKv } from "../tests/e2e/seed.mjs";
import { startPartnerSite } from "../tests/e2e/partner.mjs";
import { launchBrowser } from "../tests/e2e/browser.mjs";

const QUICK = process.argv.includes("--quick");
// --report-only: rewrite BENCHMARKS.md and the plot from target/bench-results.json.
const SECONDS = QUICK ? 5 : 10;
const CONNECTIONS = 4;
const PERCENTILES = [1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9];
const results = { date: new Date().toISOString(), load: [], cold: {}, sizes: {}, widget: [], sweeps: [] };
const log = (...a) => console.log(...a);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** wrk against `url`; returns percentiles (ms), rps and non-2xx count. */
async function load(name, url, { method = "GET", body, headers = {} }) {
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
`);
  // Warm up (JIT, isolate, partner cache), then measure.
  spawnSync("wrk", ["-t", "1", "-c", "2", "-d", "2s", "-s", script, url], { encoding: "utf8" });
  const out = spawnSync("wrk", ["-t", "2", "-c", String(CONNECTIONS), "-d", `${SECONDS}s`, "-s", script, url], { encoding: "utf8" });
  await rm(dir, { recursive: true, force: true });
  if (out.status !== 0) throw new Error(`wrk failed: ${out.stderr}`);
  const r = JSON.parse(out.stdout.trim().split("\n").at(-1));
  if (r.non2xx || r.errors) throw new Error(`${name}: ${r.non2xx} non-2xx, ${r.errors} socket errors`);
  const row = { name, ...r };
  results.load.push(row);
  log(`${name}: p50 ${r.p["50"]} ms, p99 ${r.p["99"]} ms, ${r.rps} req/s (${r.requests} requests)`);
  return row;
}

async function baselineWorker(persistTo, { bare = false } = {}) {
  await withLocalKv(persistTo, async (kv) => {
    // About the size of a connection record.
    await kv.put("bench", JSON.stringify({ access_token: "x".repeat(40), expires_at: "2026-11-23T00:00:00Z", keap_app: "ab123", pad: "y".repeat(600) }));
  });
  return startWorker({ config: join(ROOT, "bench", "baseline", bare ? "wrangler.bare.toml" : "wrangler.toml"), persistTo });
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

// ---- latency: baseline, ours, baseline ------------------------------------------------------
async function latency() {
  const baseDir = await mkdtemp(join(tmpdir(), "keaplink-baseline-"));
  let base = await baselineWorker(baseDir);
  const b1 = await load("baseline: one KV read", `${base.url}/`, {});
  await base.stop();

  const stack = await startStack({ workerVars: { LOG_REQUESTS: "all" } });
  const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  for (const email of ["ann@ab123.example", "bob@cd456.example", "cat@ef789.example"]) await link(stack, acme, "bench-user", email);
  const tokenReq = { method: "POST", body: '{"user":"bench-user","keap_app":"ab123"}', headers: { "content-type": "application/json", authorization: `Bearer ${acme.api_key}` } };
  const refreshesBefore = (await stack.sandbox.stats()).calls.token_refresh ?? 0;
  const token = await load("keaplink: POST /v1/token (fresh token)", `${stack.url}/v1/token`, tokenReq);
  const session = await mintSession(acme, "bench-user", { exp: Math.floor(Date.now() / 1000) + 3500 });
  const me = await load("keaplink: GET /v1/me/connections (3 links)", `${stack.url}/v1/me/connections`, { headers: { authorization: `Bearer ${session}`, origin: "https://acme.example" } });
  results.refreshesDuringLoad = ((await stack.sandbox.stats()).calls.token_refresh ?? 0) - refreshesBefore;
  await stack.stop();

  const quiet = await startStack({ workerVars: { LOG_REQUESTS: "errors" } });
  const acme2 = await putPartner(quiet.url, "acme", { origins: ["https://acme.example"] });
  await link(quiet, acme2, "bench-user", "ann@ab123.example");
  await load("keaplink: POST /v1/token, LOG_REQUESTS=errors", `${quiet.url}/v1/token`, { ...tokenReq, headers: { ...tokenReq.headers, authorization: `Bearer ${acme2.api_key}` } });
  await quiet.stop();

  base = await baselineWorker(baseDir);
  const b2 = await load("baseline: one KV read (again)", `${base.url}/`, {});
  await base.stop();
  base = await baselineWorker(baseDir, { bare: true });
  await load("reference: the baseline without static assets in front", `${base.url}/`, {});
  await base.stop();
  await rm(baseDir, { recursive: true, force: true });
  results.baselineP50 = (b1.p["50"] + b2.p["50"]) / 2;
  results.baselineRps = (b1.rps + b2.rps) / 2;
  return { token, me };
}

// ---- cold start -------------------------------------------------------------------------------
async function coldStart() {
  const dir = await mkdtemp(join(tmpdir(), "keaplink-cold-"));
  const ours = [];
  const base = [];
  for (let i = 0; i < 3; i++) {
    const [msBase, b] = await timed(() => baselineWorker(dir));
    await b.stop();
    base.push(msBase);
    const [msOurs, w] = await timed(() => startWorker({ persistTo: dir, secrets: { KEAP_CLIENT_ID: "x", KEAP_CLIENT_SECRET: "y", TOKEN_KEYS: Buffer.alloc(32, 1).toString("base64"), ADMIN_TOKEN } }));
    // The first request the wasm serves after start, on a fresh isolate: /healthz was the first.
    await w.stop();
    ours.push(msOurs);
  }
  await rm(dir, { recursive: true, force: true });
  results.cold = { ours: median(ours), baseline: median(base), oursAll: ours, baselineAll: base };
  log(`cold start (spawn → first 200), median of 3: ours ${results.cold.ours.toFixed(0)} ms, baseline ${results.cold.baseline.toFixed(0)} ms`);
}

// ---- sizes -------------------------------------------------------------------------------------
async function sizes() {
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
  const workerWasm = readdirSync(join(ROOT, "worker", "build")).filter((f) => f.endsWith(".wasm")).map((f) => join(ROOT, "worker", "build", f));
  const widgetDir = join(ROOT, "dist", "assets", "widget");
  const widget = readdirSync(widgetDir).filter((f) => /\.(wasm|js)$/.test(f)).map((f) => join(widgetDir, f));
  results.sizes = { worker: await size(workerWasm), widget: await size(widget), baseline: await size([join(ROOT, "bench", "baseline", "worker.js")]) };
  log(`sizes: worker wasm ${results.sizes.worker.raw} B (${results.sizes.worker.gz} gzip), widget ${results.sizes.widget.raw} B (${results.sizes.widget.gz} gzip)`);
}

// ---- widget --------------------------------------------------------------------------------------
async function widget() {
  const stack = await startStack();
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

// ---- sweeps ----------------------------------------------------------------------------------------
async function sweep(count, dueEvery) {
  const dir = await mkdtemp(join(tmpdir(), "keaplink-sweep-"));
  const stack = await startStack({ persistTo: dir, workerVars: { SWEEP_SUBREQUEST_BUDGET: "5000" } });
  try {
    await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
    await stack.worker.stop();
    const [seedMs, seeded] = await timed(() => seedConnections({ persistTo: dir, sandbox: stack.sandbox, partner: "acme", count, dueEvery, marginSecs: 21600 }));
    await stack.restartWorker();
    const before = (await stack.sandbox.stats()).calls.token_refresh ?? 0;
    const [wallMs, report] = await timed(() => runSweep(stack.worker));
    const keap = ((await stack.sandbox.stats()).calls.token_refresh ?? 0) - before;
    const row = {
      count, due: seeded.due, seedMs, wallMs, keapCalls: keap,
      listCalls: report.kv_list_calls, sweepValueReads: report.kv_value_reads, guardCalls: report.guard_calls,
      // Each refreshed guard reads its record from KV once (first use) and writes it back once.
      guardKvReads: report.refreshed + report.still_failing + report.needs_reauth, kvWrites: report.refreshed + report.still_failing + report.needs_reauth,
      refreshed: report.refreshed, errors: report.errors, complete: report.complete, reportMs: report.duration_ms,
    };
    results.sweeps.push(row);
    log(`sweep ${count} (${seeded.due} due): ${(wallMs / 1000).toFixed(1)} s, ${row.listCalls} list calls, ${row.sweepValueReads} value reads by the sweep, ${row.keapCalls} Keap calls, errors ${row.errors}`);
  } finally {
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- report ------------------------------------------------------------------------------------
function svgPlot(series) {
  const W = 760, H = 420, L = 70, R = 20, T = 40, B = 60;
  const maxMs = Math.max(...series.flatMap((s) => PERCENTILES.filter((p) => p <= 99).map((p) => s.p[String(p)])));
  const x = (ms) => L + (ms / maxMs) * (W - L - R);
  const y = (p) => T + (1 - p / 100) * (H - T - B);
  const colors = ["#2f6fdd", "#1a9e55", "#d9822b", "#999999"];
  const paths = series.map((s, i) => {
    const pts = PERCENTILES.filter((p) => p <= 99).map((p) => `${x(s.p[String(p)]).toFixed(1)},${y(p).toFixed(1)}`);
    return `<polyline fill="none" stroke="${colors[i]}" stroke-width="2.5" points="${pts.join(" ")}"/>` +
      `<text x="${W - R - 10}" y="${H - B - 16 - (series.length - 1 - i) * 18}" fill="${colors[i]}" font-size="13" text-anchor="end">${s.name} (p50 ${s.p["50"].toFixed(1)} ms)</text>`;
  });
  const ticks = [];
  const step = maxMs > 40 ? 10 : maxMs > 20 ? 5 : maxMs > 8 ? 2 : 1;
  for (let ms = 0; ms <= maxMs; ms += step) ticks.push(`<line x1="${x(ms)}" y1="${H - B}" x2="${x(ms)}" y2="${H - B + 5}" stroke="#333"/><text x="${x(ms)}" y="${H - B + 20}" font-size="12" text-anchor="middle">${ms}</text>`);
  for (const p of [0, 25, 50, 75, 90, 99]) ticks.push(`<line x1="${L - 5}" y1="${y(p)}" x2="${W - R}" y2="${y(p)}" stroke="#eee"/><text x="${L - 8}" y="${y(p) + 4}" font-size="12" text-anchor="end">p${p}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="22" font-size="15" text-anchor="middle">Latency distribution under wrangler dev, ${CONNECTIONS} connections (${results.date.slice(0, 10)})</text>
${ticks.join("\n")}
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>
<text x="${(L + W - R) / 2}" y="${H - 18}" font-size="13" text-anchor="middle">latency (ms)</text>
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
  const tools = spawnSync(join(ROOT, "node_modules", ".bin", "wrangler"), ["--version"], { encoding: "utf8" }).stdout.trim().split("\n").at(-1);
  return `${cpu.length} × ${cpu[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}, wrangler ${tools}`;
}

async function writeReport({ token, me }) {
  const ratio = (v) => (v / results.baselineP50).toFixed(2);
  const row = (r) => `| ${r.name} | ${r.p["50"].toFixed(2)} | ${r.p["99"].toFixed(2)} | ${r.rps.toFixed(0)} | ${ratio(r.p["50"])}× | ${(r.rps / results.baselineRps).toFixed(2)}× |`;
  const kb = (n) => `${n.toLocaleString("en-US")} B`;
  const s = results.sizes;
  const sweeps = results.sweeps.map((w) => `| ${w.count.toLocaleString("en-US")} | ${w.due.toLocaleString("en-US")} | ${(w.wallMs / 1000).toFixed(1)} s | ${w.listCalls} | ${w.sweepValueReads} | ${w.guardKvReads.toLocaleString("en-US")} | ${w.kvWrites.toLocaleString("en-US")} | ${w.keapCalls.toLocaleString("en-US")} | ${w.errors} | ${(w.seedMs / 1000).toFixed(0)} s |`).join("\n");
  const md = `# Benchmarks

Written by \`node bench/run.mjs${QUICK ? " --quick" : ""}\` (README: \`./scripts/bench\`) on ${results.date.slice(0, 10)}, in one run on one machine:
${machine()}. Everything runs on loopback under local \`wrangler dev\` (workerd, local KV and
Durable Objects), with wrk as the load generator (${CONNECTIONS} connections, 2 threads, ${SECONDS} s after a 2 s
warm-up). The wrk threads, wrangler's proxy and workerd share the machine's cores, so absolute
figures are this machine's; the ratios are the point.

**Baseline**: \`bench/baseline/worker.js\`, a Worker in the same workerd that reads one KV value (${"~"}700 B)
and returns it: no auth, no parsing, no crypto. Its config has the same shape as keaplink's
(\`[assets]\` in front: under wrangler dev every request first passes the asset router, one more
hop); the last row shows the bare baseline without it for reference. It was measured before and
after ours; ratios are against the mean of the two (p50 ${results.baselineP50.toFixed(2)} ms, ${results.baselineRps.toFixed(0)} req/s).

## Hot paths

| run | p50 ms | p99 ms | req/s | p50 vs baseline | req/s vs baseline |
|---|---|---|---|---|---|
${results.load.map(row).join("\n")}

Goal: \`POST /v1/token\` p50 within 1.3× of the baseline: **${ratio(token.p["50"])}×** with a log line
for every request (the default), **${ratio(results.load.find((r) => r.name.includes("LOG_REQUESTS=errors")).p["50"])}×** with \`LOG_REQUESTS=errors\`.
The difference is wrangler dev's: workerd writes every \`console.log\` as a structured record on its
output, and wrangler's Node process parses it, source-maps it and prints it again, on the same two
cores as the load (the rows above differ only in that setting); the line is written after
the answer (\`waitUntil\`), so what it costs here is CPU taken from the same two cores, not
waiting. On Cloudflare the runtime collects console output itself (Workers Logs, \`wrangler tail\`);
that cost was not measurable here. A deployment that wants the last millisecond sets
\`LOG_REQUESTS=errors\` (4xx, 5xx and answers slower than 1 s are still logged).
Keap saw ${results.refreshesDuringLoad} refresh calls during the keaplink runs (all tokens were fresh).
What the token path does per request: 2 rate-limiter calls (the address's in parallel with the key
check, the partner's in parallel with the connection read), the partner record from the isolate cache (a KV read every 30 s), the API key's
SHA-256, one KV read of the connection, one JSON log line. \`/v1/me/connections\` verifies an HS256
JWT, checks the origin and lists the user's connections from KV metadata (one list call).

![latency distribution](docs/bench-latency.png)

## Cold start

Time from spawning \`wrangler dev\` to the first 200 (median of 3; all: ours ${results.cold.oursAll.map((m) => m.toFixed(0)).join(", ")} ms,
baseline ${results.cold.baselineAll.map((m) => m.toFixed(0)).join(", ")} ms). It includes wrangler's own start-up, which dominates.

| | ms | vs baseline |
|---|---|---|
| baseline | ${results.cold.baseline.toFixed(0)} | 1.00× |
| keaplink | ${results.cold.ours.toFixed(0)} | ${(results.cold.ours / results.cold.baseline).toFixed(2)}× |

## Sizes

| artifact | raw | gzip |
|---|---|---|
| Worker wasm | ${kb(s.worker.raw)} | ${kb(s.worker.gz)} |
| widget (wasm + glue JS + element JS) | ${kb(s.widget.raw)} | ${kb(s.widget.gz)} (budget 40,960) |
| baseline Worker (JS) | ${kb(s.baseline.raw)} | ${kb(s.baseline.gz)} |

Cloudflare's limit on a Worker bundle: 3 MiB gzip (free), 10 MiB (paid); \`scripts/test\` prints the
deploy dry-run's own figure.

## Widget

Script load (\`keap-link.js\` resource start) to the first rendered status (\`keaplink:first-status\`
mark), headless Chromium, the partner page on its own loopback origin under a strict CSP, 5 page
loads: ${results.widget.map((m) => m.toFixed(0)).join(", ")} ms (median ${median(results.widget).toFixed(0)} ms). It includes
compiling the wasm and one \`GET /v1/me/connections\`.

## Sweep

One cron invocation (\`SWEEP_SUBREQUEST_BUDGET=5000\`) over connections seeded straight into local KV,
sealed by keaplink-core (\`keaplink-seed\`); 1 in ${results.sweeps[0]?.count === 10000 ? 10 : "N"} (10k) or 1 in 100 (100k) due.

| connections | due | wall time | KV list calls | KV values read by the sweep | KV reads by guards¹ | KV writes¹ | Keap calls | errors | seeding |
|---|---|---|---|---|---|---|---|---|---|
${sweeps}

The sweep decides from list metadata alone (1,000 keys per call); each due connection costs one
guard call, one KV read on the guard's first use, one Durable Object storage write, one KV write
and one Keap call. Measured: wall time, list calls and the sweep's own value reads (the sweep's
report), Keap calls (the sandbox's counter), errors. ¹ Derived, not counted: local KV keeps no
counters; one read (first use of the guard) and one write per guard that refreshed or recorded
a failure. Gzip sizes here are Node's zlib at level 9 (\`scripts/sizes\` uses gzip -9; they differ by
a few hundred bytes).
`;
  await writeFile(join(ROOT, "BENCHMARKS.md"), md);
  await mkdir(join(ROOT, "docs"), { recursive: true });
  const svg = join(ROOT, "docs", "bench-latency.svg");
  const quiet = results.load.find((r) => r.name.includes("LOG_REQUESTS=errors"));
  await writeFile(svg, svgPlot([token, quiet, me, { ...results.load[0], name: "baseline: one KV read" }]));
  await renderPng(svg, join(ROOT, "docs", "bench-latency.png"));
  log("wrote BENCHMARKS.md, docs/bench-latency.svg, docs/bench-latency.png");
}

const RESULTS = join(ROOT, "target", "bench-results.json");
if (process.argv.includes("--report-only")) {
  // Rewrites BENCHMARKS.md and the plot from the last run's figures (no measuring).
  Object.assign(results, JSON.parse(await readFile(RESULTS, "utf8")));
  await writeReport({
    token: results.load.find((r) => r.name.startsWith("keaplink: POST /v1/token (fresh")),
    me: results.load.find((r) => r.name.startsWith("keaplink: GET /v1/me/connections")),
  });
} else {
  const lat = await latency();
  await coldStart();
  await sizes();
  await widget();
  await sweep(10_000, 10);
  if (!QUICK) await sweep(100_000, 100);
  await writeFile(RESULTS, JSON.stringify(results, null, 2));
  await writeReport(lat);
}
