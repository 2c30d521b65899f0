// The README's "Rehearse the hard paths", run as written: its shell blocks are read from the README
// (so the doc cannot drift from what happens), each line run by bash against a Worker and sandbox
// of this test's own (the README's loopback URLs replaced by theirs), and what the README says
// follows each block is checked: the answers, the webhooks, the sandbox's side. A block the test
// has no check for, or a check whose block is gone, fails.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ROOT, startStack } from "./harness.mjs";
import { call, linkUser, putPartner } from "./client.mjs";
import { ofType, startReceiver, verifyDelivery } from "./receiver.mjs";

const README = await readFile(join(ROOT, "README.md"), "utf8");

/** The section's shell blocks, each with the bold title of the paragraph before it. */
export function rehearsals(readme = README) {
  const start = readme.indexOf("\n## Rehearse the hard paths\n");
  assert.ok(start >= 0, "the README has a section \"Rehearse the hard paths\"");
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const blocks = [];
  for (const m of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const before = section.slice(0, m.index);
    const titles = [...before.matchAll(/^\*\*([^*]+?\.)\*\*/gm)];
    const title = titles.length ? titles.at(-1)[1] : "(setup)";
    const lines = m[1].split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
    blocks.push({ title, lines });
  }
  return blocks;
}

let stack;
let receiver;
let demo;
const DEMO_ORIGIN = "http://127.0.0.1:1";

before(async () => {
  receiver = await startReceiver();
  stack = await startStack({ workerVars: { WEBHOOK_ALLOW_HTTP: "true" } });
  demo = await putPartner(stack.url, "demo", { origins: [DEMO_ORIGIN], extra: { webhook_url: receiver.url } });
});
after(async () => {
  await stack?.stop();
  await receiver?.stop();
});

/** Runs one README line with bash, the README's loopback URLs pointing at this test's stack. */
function run(line, env) {
  const local = line.replaceAll("http://127.0.0.1:8788", stack.sandbox.url).replaceAll("http://127.0.0.1:8787", stack.url);
  return new Promise((resolve, reject) => {
    execFile("bash", ["-euo", "pipefail", "-c", local], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`README line failed (${err.code}): ${line}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

const json = (out) => JSON.parse(out);
/** `curl -i` output: status and headers (lower-cased) and the body. */
function withHeaders(out) {
  const [head, ...rest] = out.split(/\r?\n\r?\n/);
  const [statusLine, ...hs] = head.split(/\r?\n/);
  return {
    status: Number(statusLine.split(" ")[1]),
    headers: Object.fromEntries(hs.map((h) => [h.slice(0, h.indexOf(":")).toLowerCase(), h.slice(h.indexOf(":") + 1).trim()])),
    body: JSON.parse(rest.join("\n\n")),
  };
}
const sent = async (type) => receiver.deliveries.filter(ofType(type)).map((d) => verifyDelivery(d, demo.session_secret));
const reconnectAs = (email, id, expect = "connected") =>
  linkUser(stack, demo, "user-1001", email, { origin: DEMO_ORIGIN, body: { connection_id: id }, expect });
const tokenFor = () => call(stack.url, "POST", "/v1/token", { token: demo.api_key, body: { user: "user-1001" } });

/** What the README says follows each block: `out` is each line's output, in order. */
const CHECKS = {
  "A stale access token, healed by the proxy.": async (out, { refreshesBefore }) => {
    assert.ok(json(out[0]).revoked >= 1, out[0]);
    assert.equal(json(out[1]).email, "ann@ab123.example", "Keap's 200, through the heal");
    const stats = await stack.sandbox.stats();
    assert.equal(stats.calls.token_refresh - refreshesBefore, 1, "one refresh healed it");
  },
  "A lost refresh answer.": async (out, { id }) => {
    const first = json(out[1]);
    assert.equal(first.status, "active", out[1]);
    assert.equal(first.last_error.code, "keap_timeout");
    const second = json(out[2]);
    assert.equal(second.status, "needs_reauth", out[2]);
    assert.equal(second.last_error.code, "refresh_lost");
    const token = json(out[3]);
    assert.equal(token.error.code, "needs_reauth", out[3]);
    await receiver.waitFor(ofType("connection.needs_reauth"), "connection.needs_reauth");
    const [event] = await sent("connection.needs_reauth");
    assert.equal(event.connection.last_error.code, "refresh_lost");
    // "Reconnect as Ann to go on": the same id, and connection.recovered.
    await reconnectAs("ann@ab123.example", id);
    await receiver.waitFor(ofType("connection.recovered"), "connection.recovered");
    assert.equal((await sent("connection.recovered"))[0].connection.id, id);
    assert.equal((await tokenFor()).status, 200);
  },
  "A user who revoked in Keap (needs reauth).": async (out) => {
    assert.equal(out[0], "", "the sandbox's 204");
    const link = json(out[1]);
    assert.equal(link.status, "needs_reauth", out[1]);
    assert.equal(link.last_error.code, "refresh_token_invalid");
    assert.equal(json(out[2]).error.code, "needs_reauth", out[2]);
    assert.equal((await tokenFor()).json.error.code, "needs_reauth");
    await receiver.waitFor((d) => ofType("connection.needs_reauth")(d) && JSON.parse(d.body).connection.last_error?.code === "refresh_token_invalid", "the second connection.needs_reauth");
  },
  "A wrong-person reconnect.": async (out, { id }) => {
    // The cause is in the README's words, not a line: Reconnect, signed in as Amy. The test makes it
    // before the line runs (see below); the line shows it in the timeline.
    const detail = json(out[0]);
    assert.equal(detail.id, id);
    assert.equal(detail.status, "needs_reauth", "nothing was stored");
    const mismatch = detail.events.find((e) => e.type === "identity_mismatch");
    assert.ok(mismatch, JSON.stringify(detail.events.slice(0, 3)));
    assert.match(mismatch.detail, /amy@ab123\.example/);
    // "Reconnect as Ann restores the link."
    await reconnectAs("ann@ab123.example", id);
    assert.equal((await tokenFor()).status, 200);
  },
  "Keap's quota spent.": async (out) => {
    const held = withHeaders(out[1]);
    assert.equal(held.status, 429, out[1]);
    assert.equal(held.body.error.code, "keap_quota");
    assert.equal(held.headers["keaplink-error"], "keap_quota");
    const wait = Number(held.headers["retry-after"]);
    assert.ok(Number.isInteger(wait) && wait >= 1 && wait <= 60, `retry-after ${held.headers["retry-after"]}`);
    assert.equal(out[2], "", "the reset's 204");
    const stats = await stack.sandbox.stats();
    assert.equal(stats.quota.product_quota.used, 0, "the sandbox is back to normal");
    // The widget's side: the link is still connected.
    const me = await call(stack.url, "GET", "/v1/connections?q=user-1001", { token: demo.api_key });
    assert.equal(me.json.connections[0].status, "active");
  },
};

/** Made before a block's lines run: what the README says the person does in the browser. */
const BEFORE = {
  "A wrong-person reconnect.": async ({ id }) => {
    const { journey } = await reconnectAs("amy@ab123.example", id, "error");
    assert.match(journey.final.text, /identity_mismatch/);
  },
};

test("the README's rehearsal blocks are the ones this test checks, in its order", () => {
  const blocks = rehearsals();
  assert.equal(blocks[0].title, "(setup)");
  assert.deepEqual(blocks.slice(1).map((b) => b.title), Object.keys(CHECKS));
  for (const b of blocks) assert.ok(b.lines.length > 0, b.title);
});

test("every line of \"Rehearse the hard paths\" does what the README says", async (t) => {
  // "First link Ann": the demo page of user-1001, signed in as Ann.
  const { connectionId } = await linkUser(stack, demo, "user-1001", "ann@ab123.example", { origin: DEMO_ORIGIN });
  const env = { KEAPLINK_URL: stack.url, KEAPLINK_API_KEY: demo.api_key, KEAP_SANDBOX: stack.sandbox.url };
  const [setup, ...blocks] = rehearsals();
  const id = (await run(`${setup.lines.join("\n")}\nprintf %s "$ID"`, env)).trim();
  assert.equal(id, connectionId, "the setup finds Ann's link");
  env.ID = id;
  for (const block of blocks) {
    await t.test(block.title, async () => {
      const ctx = { id, refreshesBefore: (await stack.sandbox.stats()).calls.token_refresh ?? 0 };
      await BEFORE[block.title]?.(ctx);
      const out = [];
      for (const line of block.lines) out.push(await run(line, env));
      await CHECKS[block.title](out, ctx);
    });
  }
});
