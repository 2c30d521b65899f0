// The OpenAPI document is served by the Worker's deploy, as a static file: exactly the committed
// docs/openapi.json, public, cacheable, readable from any origin.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ROOT, startWorker } from "./harness.mjs";
import { call } from "./client.mjs";

let worker;
before(async () => { worker = await startWorker(); });
after(async () => { await worker?.stop(); });

test("GET /v1/openapi.json answers the committed document, public and cacheable", async () => {
  const committed = await readFile(join(ROOT, "docs", "openapi.json"), "utf8");
  const res = await call(worker.url, "GET", "/v1/openapi.json", { headers: { origin: "https://any.example" } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^application\/json/);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.match(res.headers.get("cache-control"), /\bpublic\b/);
  assert.match(res.headers.get("cache-control"), /max-age=\d+/);
  assert.equal(res.text, committed, "the served document is docs/openapi.json (scripts/build widget copies it)");
  assert.equal(res.json.openapi, "3.1.0");
  assert.ok(res.json.paths["/v1/token"].post, "the document describes the API");
});

test("HEAD /v1/openapi.json answers the same headers without a body", async () => {
  const res = await call(worker.url, "HEAD", "/v1/openapi.json");
  assert.equal(res.status, 200);
  assert.equal(res.text, "");
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
});

test("a path beside the document is the Worker's 404, not a file", async () => {
  const res = await call(worker.url, "GET", "/v1/openapi.json/");
  assert.equal(res.status, 404);
  assert.equal(res.json.error.code, "not_found");
  assert.ok(res.headers.get("x-request-id"));
});

test("an unknown path points to the API reference every deployment serves, not to a README", async () => {
  for (const path of ["/v1/nope", "/v2/token", "/v1/connection"]) {
    const res = await call(worker.url, "GET", path);
    assert.equal(res.status, 404);
    assert.equal(res.json.error.code, "not_found");
    assert.match(res.json.error.message, /GET \/v1\/openapi\.json/, path);
    assert.doesNotMatch(res.json.error.message, /README/);
  }
  // And the path it names is the document.
  const doc = await call(worker.url, "GET", "/v1/openapi.json");
  assert.equal(doc.status, 200);
  assert.equal(doc.json.openapi, "3.1.0");
});
