// What keeping 10,000, 100,000 and 1,000,000 links costs a month on Cloudflare's Workers Paid
// plan, from the counts the benchmarks measured per link and per sweep and the refresh rates the
// keep-alive simulation measured. Prints the README's table (markdown).
//
//   node bench/costs.mjs [target/bench-sweep.json]   (default: bench/sweep-1m.json, the measured run)
//
// Prices: Cloudflare's published pricing pages as read on 2026-12-07 (the README cites them).
// Every count below is either measured (named where) or read from the code (named where).
import { readFileSync } from "node:fs";

const PRICES = {
  base: 5.0, // Workers Paid, per month
  requests: { included: 10e6, perMillion: 0.3 },
  cpuMs: { included: 30e6, perMillion: 0.02 },
  kvReads: { included: 10e6, perMillion: 0.5 },
  kvWrites: { included: 1e6, perMillion: 5.0 },
  kvLists: { included: 1e6, perMillion: 5.0 },
  kvStorageGb: { included: 1, perGbMonth: 0.5 },
  doRequests: { included: 1e6, perMillion: 0.15 },
  doGbSeconds: { included: 400e3, perMillion: 12.5 },
  doRowsWritten: { included: 50e6, perMillion: 1.0 },
  doStorageGb: { included: 5, perGbMonth: 0.2 },
  queueOps: { included: 1e6, perMillion: 0.4 },
};

const DAYS = 30;
// Keep-alive simulation (BENCHMARKS.md "Link keeping at a million links"): Keap refreshes a day
// per link, all idle (31,813 a day per million) and with 5% used daily (99,748 a day per million).
const MIXES = [
  { name: "5% used daily", refreshesPerLinkDay: 99_748 / 1e6, dailyShare: 0.05 },
  { name: "all idle", refreshesPerLinkDay: 31_813 / 1e6, dailyShare: 0 },
];
// Per refresh (the sweep bench, and worker/src/guard.rs): one guard request, which reads the
// record from KV on its first use (counted on every refresh: guards are rarely warm an hour
// later) and writes it back to KV once; the guard also tells the stats object and the partner's
// guard (two more Durable Object requests). Rows written: the guard's record and timeline, one
// counter row in each of the two others (read from the code; SQLite-backed objects).
const PER_REFRESH = { doRequests: 3, kvReads: 1, kvWrites: 1, doRowsWritten: 4, doSeconds: 1.0 + 2 * 0.05 };
// A link in daily use records one use per 2 days (`KeepPolicy::record_use`): one guard request,
// one KV write, two rows.
const PER_USE = { doRequests: 1, kvWrites: 1, doRowsWritten: 2, doSeconds: 0.05, perDailyLinkDay: 0.5 };
// The hourly sweep: one cron invocation, one KV list call per 1,000 links (measured).
const SWEEPS_PER_MONTH = 24 * DAYS;
// Stored per link: KV ~1.3 KB over 5 entries (record, metadata, id index, search index; measured
// from keaplink-seed with Keap-length tokens), a guard's SQLite database ~16 KB (Cloudflare: an
// empty one takes ~12 KB; the record and the timeline's last events).
const KV_BYTES_PER_LINK = 1300;
const DO_BYTES_PER_LINK = 16_000;
// A Durable Object is billed at 128 MB while active.
const DO_GB = 0.125;

function sweepCpuMsPerLink() {
  const file = process.argv[2] ?? new URL("./sweep-1m.json", import.meta.url).pathname;
  try {
    const rows = JSON.parse(readFileSync(file, "utf8")).sweeps.filter((s) => s.workerdCpuMs);
    const biggest = rows.sort((a, b) => b.count - a.count)[0];
    return { perLink: biggest.workerdCpuMs / biggest.count, from: `${biggest.count.toLocaleString("en-US")}-link sweep, ${file.replace(/.*\/(bench|target)\//, "$1/")}` };
  } catch {
    // The 1,000,000-link sweep's workerd CPU (an upper bound: local KV's emulation included).
    return { perLink: 0.05, from: "default" };
  }
}

const over = (n, p) => Math.max(0, n - p.included);
function month(links, mix, sweepCpu) {
  const refreshes = links * mix.refreshesPerLinkDay * DAYS;
  const uses = links * mix.dailyShare * PER_USE.perDailyLinkDay * DAYS;
  const u = {
    requests: SWEEPS_PER_MONTH,
    cpuMs: links * sweepCpu * SWEEPS_PER_MONTH,
    kvReads: refreshes * PER_REFRESH.kvReads,
    kvWrites: refreshes * PER_REFRESH.kvWrites + uses * PER_USE.kvWrites,
    kvLists: Math.ceil(links / 1000) * SWEEPS_PER_MONTH,
    kvStorageGb: (links * KV_BYTES_PER_LINK) / 1e9,
    doRequests: refreshes * PER_REFRESH.doRequests + uses * PER_USE.doRequests,
    doGbSeconds: (refreshes * PER_REFRESH.doSeconds + uses * PER_USE.doSeconds) * DO_GB,
    doRowsWritten: refreshes * PER_REFRESH.doRowsWritten + uses * PER_USE.doRowsWritten,
    doStorageGb: (links * DO_BYTES_PER_LINK) / 1e9,
    queueOps: 0,
  };
  const cost = {};
  for (const [k, p] of Object.entries(PRICES)) {
    if (k === "base") continue;
    cost[k] = p.perMillion !== undefined ? (over(u[k], p) / 1e6) * p.perMillion : over(u[k], p) * p.perGbMonth;
  }
  const total = PRICES.base + Object.values(cost).reduce((a, b) => a + b, 0);
  return { u, cost, total };
}

const sweepCpu = sweepCpuMsPerLink();
const SIZES = [10_000, 100_000, 1_000_000];
const LABELS = {
  requests: "Workers requests (cron)", cpuMs: "Workers CPU ms (sweeps)", kvReads: "KV reads", kvWrites: "KV writes",
  kvLists: "KV list calls", kvStorageGb: "KV storage (GB)", doRequests: "Durable Object requests", doGbSeconds: "Durable Object duration (GB-s)",
  doRowsWritten: "Durable Object rows written", doStorageGb: "Durable Object storage (GB)", queueOps: "Queue operations",
};
const fmt = (n) => (n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(n >= 10 ? 1 : 2));
const money = (n) => `$${n.toFixed(2)}`;
for (const mix of MIXES) {
  const months = SIZES.map((n) => month(n, mix, sweepCpu.perLink));
  console.log(`\n**${mix.name}** (${(mix.refreshesPerLinkDay).toFixed(4)} Keap refreshes per link a day)\n`);
  console.log(`| a month | ${SIZES.map((n) => `${n.toLocaleString("en-US")} links`).join(" | ")} |`);
  console.log(`|---|${SIZES.map(() => "---:").join("|")}|`);
  for (const k of Object.keys(LABELS)) {
    console.log(`| ${LABELS[k]} | ${months.map((m) => `${fmt(m.u[k])} (${money(m.cost[k])})`).join(" | ")} |`);
  }
  console.log(`| **total, with the plan's $5** | ${months.map((m) => `**${money(m.total)}**`).join(" | ")} |`);
}
console.log(`\nsweep CPU per link: ${sweepCpu.perLink.toFixed(4)} ms (${sweepCpu.from})`);
