// The Worker's operational surface, through the real runtime.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./harness.mjs";

let worker;
before(async () => { worker = await startWorker(); });
after(async () => { await worker?.stop(); });

test("GET /healthz answers {ok: true} as JSON", async () => {
  const res = await fetch(`${worker.url}/healthz`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^application\/json/);
  assert.deepEqual(await res.json(), { ok: true });
});

test("an unknown route gets the contract's 404 error body", async () => {
  const res = await fetch(`${worker.url}/no/such/route`);
  assert.equal(res.status, 404);
  const body = await res.json();
  assert.equal(body.error.code, "not_found");
  assert.equal(typeof body.error.message, "string");
  assert.ok(body.error.message.length > 0);
});

test("a wrong method on /healthz gets 405", async () => {
  const res = await fetch(`${worker.url}/healthz`, { method: "POST", body: "{}" });
  assert.equal(res.status, 405);
  assert.equal((await res.json()).error.code, "method_not_allowed");
});

test("the Worker serves the widget's files and the demo page as static assets", async () => {
  const js = await fetch(`${worker.url}/widget/keap-link.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get("content-type"), /javascript/);
  const wasm = await fetch(`${worker.url}/widget/keap_link_wasm_bg.wasm`);
  assert.equal(wasm.status, 200);
  assert.equal(wasm.headers.get("content-type"), "application/wasm");
  const bytes = new Uint8Array(await wasm.arrayBuffer());
  assert.deepEqual([...bytes.slice(0, 4)], [0x00, 0x61, 0x73, 0x6d]); // "\0asm"
  const demo = await fetch(`${worker.url}/demo/`);
  assert.equal(demo.status, 200);
  assert.match(await demo.text(), /<keap-link/);
});

test("every answer carries a request id, logged as one JSON line without the query", async () => {
  const res = await fetch(`${worker.url}/healthz?code=not-for-logs`);
  const id = res.headers.get("x-request-id");
  assert.ok(id && id.length >= 8, id);
  let line;
  for (let i = 0; i < 100 && !line; i++) {
    line = worker.logs.join("").split("\n").find((l) => l.includes(`"id":"${id}"`));
    if (!line) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(line, "a log line for the request");
  const entry = JSON.parse(line.slice(line.indexOf("{")));
  assert.equal(entry.event, "request");
  assert.equal(entry.method, "GET");
  assert.equal(entry.path, "/healthz");
  assert.equal(entry.status, 200);
  assert.ok(!line.includes("not-for-logs"));
  const missing = await fetch(`${worker.url}/nope`);
  assert.ok(missing.headers.get("x-request-id"));
});
