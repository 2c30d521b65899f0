// The bulk import benchmark: 10,000 links (ten calls of 1,000) brought into a fresh deployment
// under `wrangler dev` from tokens the sandbox minted "elsewhere", at the default pace. Prints
// items imported per minute, Keap calls per item, and the outcomes; writes the same figures to
// target/bench-imports.json (bench/run.mjs puts them in BENCHMARKS.md).
//
//   node bench/imports.mjs [--links N] [--rate PER_MIN]
//
// Bounded: N links (default 10,000), every call on loopback, and the whole run stops after
// 30 minutes whatever happens.
import assert from "node:assert/strict";
import { writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { ADMIN_TOKEN, ROOT, startStack } from "../tests/e2e/harness.mjs";
import { call } from "../tests/e2e/client.mjs";

const argv = process.argv.slice(2);
const arg = (name, dflt) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : dflt);
const LINKS = arg("--links", 10_000);
const RATE = arg("--rate", 1200); // KEAP_REFRESH_RATE_PER_MIN's default
const DEADLINE = Date.now() + 30 * 60_000;

// The sandbox's Keap users and their apps: links spread over every app, as a partner's are.
const USERS = [
  ["ann@ab123.example", "ab123"],
  ["bob@cd456.example", "cd456"],
  ["cat@ef789.example", "ef789"],
  ["dan@gh012.example", "gh012"],
  ["dan@gh012.example", "ij345"],
];

const stack = await startStack({ workerVars: { KEAP_REFRESH_RATE_PER_MIN: String(RATE) } });
try {
  const partner = await call(stack.url, "PUT", "/v1/admin/partners/bulk", {
    token: ADMIN_TOKEN, body: { name: "Bulk", allowed_origins: [], return_urls: [] },
  });
  assert.equal(partner.status, 200, partner.text);
  const key = partner.json.api_key;
  const sandbox = async (path, body) => {
    const res = await fetch(`${stack.sandbox.url}/__sandbox/${path}`, body === undefined ? {} : {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    return res.json();
  };
  const tokens = [];
  for (let i = 0; tokens.length < LINKS; i++) {
    const [email, app] = USERS[i % USERS.length];
    const count = Math.min(1000, LINKS - tokens.length);
    tokens.push(...(await sandbox("mint", { email, app, count })).tokens);
  }
  const before = await sandbox("stats");
  const started = Date.now();
  const ids = [];
  for (let i = 0; i < LINKS; i += 1000) {
    const links = tokens.slice(i, i + 1000).map((t, j) => ({ user: `user-${i + j}`, refresh_token: t.refresh_token }));
    const res = await call(stack.url, "POST", "/v1/imports", {
      token: key, body: { links }, headers: { "idempotency-key": `bench-${i}` },
    });
    assert.equal(res.status, 202, res.text);
    ids.push(res.json.import_id);
  }
  const counts = {};
  let progress = 0;
  for (const id of ids) {
    for (;;) {
      assert.ok(Date.now() < DEADLINE, "the benchmark's 30 minutes ran out");
      const res = await call(stack.url, "GET", `/v1/imports/${id}`, { token: key });
      if (res.json.status === "done") {
        for (const [k, v] of Object.entries(res.json.counts)) counts[k] = (counts[k] ?? 0) + v;
        break;
      }
      const done = res.json.total - res.json.counts.pending;
      if (done !== progress) {
        progress = done;
        process.stdout.write(`  ${id}: ${done}/${res.json.total} after ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  const minutes = (Date.now() - started) / 60_000;
  const after = await sandbox("stats");
  const delta = (a, b) => (a ?? 0) - (b ?? 0);
  const refreshes = delta(after.calls.token_refresh, before.calls.token_refresh);
  const api = delta(after.api_calls_total, before.api_calls_total);
  const byRoute = Object.fromEntries(Object.entries(after.api_calls).map(([k, v]) => [k, v - (before.api_calls[k] ?? 0)]).filter(([, v]) => v > 0));
  const result = {
    links: LINKS,
    rate_per_min: RATE,
    minutes: Number(minutes.toFixed(2)),
    items_per_minute: Math.round(LINKS / minutes),
    keap_calls_per_item: Number(((refreshes + api) / LINKS).toFixed(3)),
    refreshes,
    api_calls: byRoute,
    outcomes: counts,
  };
  console.log(JSON.stringify(result, null, 2));
  await mkdir(join(ROOT, "target"), { recursive: true });
  await writeFile(join(ROOT, "target", "bench-imports.json"), JSON.stringify(result, null, 2));
  assert.equal(counts.imported, LINKS, "every item imported");
} finally {
  await stack.stop();
}
