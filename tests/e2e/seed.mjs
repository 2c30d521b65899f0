// Seeds many connections straight into a stopped Worker's local KV, sealed exactly as the Worker
// seals them (by `keaplink-seed`, which uses keaplink-core), through Miniflare's KV API.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { Miniflare } from "miniflare";
import { ROOT, TOKEN_KEY } from "./harness.mjs";

const SEED_BIN = join(ROOT, "target", "debug", "keaplink-seed");

/** Opens the stopped Worker's local KV for `fn(kv)`. */
export async function withLocalKv(persistTo, fn) {
  const mf = new Miniflare({
    modules: true,
    script: "export default { fetch() { return new Response(''); } }",
    kvNamespaces: { KV: "keaplink-local" },
    defaultPersistRoot: join(persistTo, "v3"),
  });
  try {
    return await fn(await mf.getKVNamespace("KV"));
  } finally {
    await mf.dispose();
  }
}

/** Writes `count` connections of `partner`; every `dueEvery`-th is due, with live tokens. */
/** `index`: also write each link's search index entries, as its guard would (the console). */
/** `refreshLifetimeSecs`: the refresh tokens' expected life (as the Worker is configured). */
export async function seedConnections({ persistTo, sandbox, partner, count, dueEvery, marginSecs, unreadableIdle = false, index = false, refreshLifetimeSecs }) {
  const due = Math.ceil(count / dueEvery);
  const { tokens } = await sandbox.seed("ann@ab123.example", due);
  const input = { partner, token_keys: TOKEN_KEY, now: Math.floor(Date.now() / 1000), count, due_every: dueEvery, margin_secs: marginSecs, tokens, unreadable_idle: unreadableIdle, index, refresh_lifetime_secs: refreshLifetimeSecs };
  const out = spawnSync(SEED_BIN, { input: JSON.stringify(input), encoding: "utf8", maxBuffer: 1 << 30 });
  if (out.status !== 0) throw new Error(`keaplink-seed failed: ${out.stderr}`);
  const entries = out.stdout.trim().split("\n").map((l) => JSON.parse(l));
  await withLocalKv(persistTo, async (kv) => {
    for (let i = 0; i < entries.length; i += 100) {
      await Promise.all(entries.slice(i, i + 100).map((e) => kv.put(e.key, e.value, e.metadata ? { metadata: e.metadata } : {})));
    }
  });
  return { written: entries.length, due };
}
