// Keap's hook posts: Keap's POST of an event batch to a link's hook URL (`/hooks/keap/<token>`)
// → keaplink's answer, under load, against the one-KV-read baseline of bench/run.mjs measured in
// the same run and the same setup (workerd direct). The answer is one KV read (the URL's link,
// while the body is read), the body's check and one queue send. Rows: the baseline; keaplink in
// one wasm with the queue's consumer (the guard's dedupe, the counts, the webhook) in the same
// workerd, as under a burst from Keap; Keap's retries of one batch; the front alone, as deployed
// (its own build and config, the consumer elsewhere); the baseline that also sends the body to a
// queue (the floor of a receiver that must not lose what it accepted); the baseline again. Each
// request posts another object id, so the batches are new ones.
//
//   node bench/hooks.mjs [--quick]   (after ./scripts/build worker whole)
//
// Prints p50/p99 (ms), req/s and the ratio to the baseline; writes the same figures to
// target/bench-hooks.json (BENCHMARKS.md, "Keap's hook posts", quotes them). Bounded: wrk on
// loopback with 4 connections for 10 s a row (5 s with --quick) after a 2 s warm-up; the whole
// run stops after 10 minutes whatever happens.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../tests/e2e/harness.mjs";
import { Browser, call, linkThroughSandbox, mintSession, putPartner } from "../tests/e2e/client.mjs";
import { withLocalKv } from "../tests/e2e/seed.mjs";
import { SETUPS, snapshot, startStack } from "./setups.mjs";

const QUICK = process.argv.includes("--quick");
const SECONDS = QUICK ? 5 : 10;
const WARMUP_SECONDS = 2;
const CONNECTIONS = 4;
const THREADS = 2;
const SETUP = "direct";
const GOAL = 1.5;
const deadline = setTimeout(() => {
  console.error("bench/hooks.mjs: the 10 minutes ran out");
  process.exit(1);
}, 10 * 60_000);
deadline.unref();

function wrk(args) {
  return new Promise((resolve, reject) => {
    const child = spawn("wrk", args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.once("error", reject);
    child.once("close", (status) => resolve({ status, stdout, stderr }));
  });
}

/** wrk against `url` with `lua` (a request function, or none: GET); the percentiles in ms and req/s. */
async function load(name, url, lua = "") {
  const dir = await mkdtemp(join(tmpdir(), "kl-hooks-bench-"));
  const script = join(dir, "s.lua");
  await writeFile(script, `${lua}
done = function(summary, latency, requests)
  io.write(string.format('{"requests":%d,"non2xx":%d,"errors":%d,"rps":%.1f,"p50":%.3f,"p99":%.3f}\\n',
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
`);
  try {
    await wrk(["-t", "1", "-c", "2", "-d", `${WARMUP_SECONDS}s`, "-s", script, url]);
    await new Promise((r) => setTimeout(r, 200));
    const out = await wrk(["-t", String(THREADS), "-c", String(CONNECTIONS), "-d", `${SECONDS}s`, "-s", script, url]);
    if (out.status !== 0) throw new Error(`wrk failed: ${out.stderr}`);
    const r = JSON.parse(out.stdout.trim().split("\n").at(-1));
    if (r.non2xx || r.errors) throw new Error(`${name}: ${r.non2xx} non-2xx, ${r.errors} socket errors of ${r.requests}`);
    console.log(`[${SETUP}] ${name}: p50 ${r.p50} ms, p99 ${r.p99} ms, ${r.rps} req/s (${r.requests} requests)`);
    return { name, ...r };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function baseline(snap, dir, name, { config = snap.baseline, lua = "" } = {}) {
  await withLocalKv(dir, async (kv) => {
    // As bench/run.mjs seeds it: about the size of a connection record.
    await kv.put("bench", JSON.stringify({ access_token: "x".repeat(40), expires_at: "2026-11-23T00:00:00Z", keap_app: "ab123", pad: "y".repeat(600) }));
  });
  const base = await SETUPS[SETUP].start({ config, persistTo: dir });
  try {
    const first = await fetch(`${base.url}/`, lua ? { method: "POST", body: "{}" } : {});
    if (first.status !== 200) throw new Error(`baseline answered ${first.status}`);
    return await load(name, `${base.url}/`, lua);
  } finally {
    await base.stop();
  }
}

// Keap's body, another object id each request (a thread's own counter, apart from the other's).
const HOOK_POST = `
local n = 0
local threads = 0
-- Each thread's ids start ten billion apart, and each wrk run's (warm-up, measured) apart by the
-- clock (thread:set makes "first" a global of that thread): no batch repeats another.
setup = function(thread)
  threads = threads + 1
  thread:set("first", threads * 10000000000 + (os.time() % 100000) * 100000)
end
request = function()
  n = n + 1
  return wrk.format("POST", nil, { ["content-type"] = "application/json" },
    '{"event_key":"contact.add","object_type":"contact","object_keys":[{"id":' .. ((first or 0) + n) .. ',"apiUrl":"","timestamp":"2026-12-07T00:00:00Z"}]}')
end
`;

const snap = await snapshot();
const baseDir = await mkdtemp(join(tmpdir(), "kl-hooks-baseline-"));
const stackDir = await mkdtemp(join(tmpdir(), "kl-hooks-stack-"));
const rows = [];
try {
  rows.push(await baseline(snap, baseDir, "baseline: one KV read"));
  const stack = await startStack(SETUP, snap, { workerVars: { LOG_REQUESTS: "all" }, persistTo: stackDir });
  try {
    const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
    const res = await call(stack.url, "POST", "/v1/me/connect", { token: await mintSession(acme, "bench-user"), body: {} });
    const j = await linkThroughSandbox(new Browser(), stack.sandbox.url, res.json.authorize_url, { email: "ann@ab123.example" });
    if (!/Keap connected/.test(j.final.text)) throw new Error("the link failed");
    const id = (await call(stack.url, "GET", "/v1/connections", { token: acme.api_key })).json.connections[0].id;
    const set = await call(stack.url, "PUT", `/v1/connections/${id}/hooks`, { token: acme.api_key, body: { event_keys: ["contact.add"] } });
    if (set.status !== 200 || set.json.hooks[0].status !== "verified") throw new Error(`hooks: ${set.status} ${set.text}`);
    const hooks = await (await fetch(`${stack.sandbox.url}/__sandbox/hooks`)).json();
    const url = hooks.hooks[0].hook_url;
    // The queue's work of a row (each batch received and counted) is let drain before the next
    // row, so no row measures the one before's backlog.
    const { ADMIN_TOKEN } = await import("../tests/e2e/harness.mjs");
    const drained = async () => {
      let last = -1;
      for (const until = Date.now() + 120_000; Date.now() < until; await new Promise((r) => setTimeout(r, 1000))) {
        const k = (await call(stack.url, "GET", "/v1/admin/stats", { token: ADMIN_TOKEN })).json.keap_events_last_24h;
        if (k.received === last) return k;
        last = k.received;
      }
      throw new Error("the queue did not drain in 2 minutes");
    };
    rows.push(await load("keaplink: Keap's POST to a hook URL (a new event batch each)", url, HOOK_POST));
    console.log("  queue drained:", JSON.stringify(await drained()));
    // Keap's retries of one batch: the same answer path, and after it the guard drops the batch
    // (no webhook to send), so less of the queue's work shares workerd with the load.
    rows.push(await load("keaplink: the same, one batch posted again and again (Keap's retries)", url, HOOK_POST.replace("((first or 0) + n)", "1")));
    console.log("  queue drained:", JSON.stringify(await drained()));
    // As deployed: Keap's posts reach the front, whose isolate only answers (one KV read, the
    // body's check, one queue send); the queue's consumer runs in the objects' Worker, elsewhere.
    // The front's own build and config (less its Durable Object bindings, which this path never
    // calls), on the same KV: the messages wait in the local queue, consumed by nobody here.
    if (!snap.frontCold) throw new Error("no worker/build-front: run scripts/build worker whole first");
    await stack.restartWorker(snap.frontCold);
    rows.push(await load("keaplink's front alone, as deployed: Keap's POST (a new event batch each; the queue's consumer elsewhere)", url, HOOK_POST));
    // The floor under that answer: the baseline reading its value and the body, then sending the
    // body to a queue (nothing consumes it) before its 200.
    rows.push(await baseline(snap, baseDir, "reference: the baseline, then the body sent to a queue before its 200", { config: snap.queueBaseline, lua: HOOK_POST }));
  } finally {
    await stack.stop();
  }
  rows.push(await baseline(snap, baseDir, "baseline: one KV read (again)"));
} finally {
  await rm(baseDir, { recursive: true, force: true });
  await rm(stackDir, { recursive: true, force: true });
  await snap.remove();
}
const [b1, ours, again, deployed, floor, b2] = rows;
const base = { p50: (b1.p50 + b2.p50) / 2, p99: (b1.p99 + b2.p99) / 2, rps: (b1.rps + b2.rps) / 2 };
const ratio = { p50: ours.p50 / base.p50, p99: ours.p99 / base.p99, rps: ours.rps / base.rps };
console.log(`baseline (mean of both runs): p50 ${base.p50.toFixed(2)} ms, p99 ${base.p99.toFixed(2)} ms, ${base.rps.toFixed(0)} req/s`);
console.log(`hook post vs baseline: p50 ${ratio.p50.toFixed(2)}×, p99 ${ratio.p99.toFixed(2)}×, req/s ${ratio.rps.toFixed(2)}× (goal: p50 ≤ ${GOAL}×)`);
const retries = { p50: again.p50 / base.p50, p99: again.p99 / base.p99, rps: again.rps / base.rps };
console.log(`Keap's retries vs baseline: p50 ${retries.p50.toFixed(2)}×, p99 ${retries.p99.toFixed(2)}×, req/s ${retries.rps.toFixed(2)}×`);
const front = { p50: deployed.p50 / base.p50, p99: deployed.p99 / base.p99, rps: deployed.rps / base.rps };
console.log(`the front alone, as deployed, vs baseline: p50 ${front.p50.toFixed(2)}×, p99 ${front.p99.toFixed(2)}×, req/s ${front.rps.toFixed(2)}× (goal: p50 ≤ ${GOAL}×)`);
const queueFloor = { p50: floor.p50 / base.p50, frontOverFloor: deployed.p50 / floor.p50 };
console.log(`the baseline with a queue send vs baseline: p50 ${queueFloor.p50.toFixed(2)}×; the front alone vs it: p50 ${queueFloor.frontOverFloor.toFixed(2)}×`);
await mkdir(join(ROOT, "target"), { recursive: true });
await writeFile(join(ROOT, "target", "bench-hooks.json"), JSON.stringify({ setup: SETUP, seconds: SECONDS, connections: CONNECTIONS, rows, baseline: base, ratio, retries, front, queueFloor, goal: GOAL }, null, 2));
