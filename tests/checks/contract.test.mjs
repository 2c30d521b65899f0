// Runs after the whole end-to-end suite (scripts/test, its own phase): every Worker answer the
// suite received (recorded by the harness in target/test-logs/transcript) must be one the OpenAPI
// document (docs/openapi.json) describes: the operation exists, the status is documented for it,
// every header sent is documented (and every required one sent), the body matches the schema
// with no undocumented field, and an error's code is one the operation lists for that status.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { ROOT, TRANSCRIPT } from "../e2e/harness.mjs";

const DOC = JSON.parse(await readFile(join(ROOT, "docs", "openapi.json"), "utf8"));

/**
 * Headers the runtime (workerd, wrangler's local proxy, Cloudflare's asset server) adds on its
 * own, which the Worker neither sets nor controls: transport framing and compression
 * (content-encoding: the runtime gzips for clients that accept it), and the asset cache's mark.
 * content-type is checked against the documented media types instead.
 */
const RUNTIME_HEADERS = new Set([
  "date", "content-length", "connection", "keep-alive", "transfer-encoding", "server",
  "content-encoding", "cf-cache-status", "content-type",
]);

/**
 * Findings known and reported, each with its written reason (tests/checks/contract-pending.json):
 * reported as diagnostics instead of failing the suite, until the defect is fixed and the entry
 * removed. An entry nothing matches any more is reported too, so it gets removed.
 */
const PENDING = JSON.parse(await readFile(join(ROOT, "tests", "checks", "contract-pending.json"), "utf8"));

/** Fewer validated answers than this and the check proves nothing. */
export const MIN_ANSWERS = 200;

/** Every operation of the document, labelled as `check` labels an answer: `GET /v1/connections`. */
export function operations(doc = DOC) {
  const methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.keys(item).filter((m) => methods.includes(m)).map((m) => `${m.toUpperCase()} ${path}`));
}

/** Every object schema with named properties is closed: a field it does not name is a finding. */
function closed(schema) {
  if (Array.isArray(schema)) return schema.map(closed);
  if (!schema || typeof schema !== "object") return schema;
  const out = {};
  for (const [k, v] of Object.entries(schema)) out[k] = k === "example" || k === "examples" || k === "default" || k === "const" || k === "enum" ? v : closed(v);
  if (out.properties && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

/** Rewrites the document's schema references into the one ajv schema that holds them all. */
function retarget(schema) {
  return JSON.parse(JSON.stringify(schema).replaceAll('"#/components/schemas/', '"keaplink#/$defs/'));
}

export function makeChecker(doc = DOC) {
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
  addFormats(ajv);
  // OpenAPI's annotation keywords, beside JSON Schema's.
  ajv.addVocabulary(["example", "xml", "externalDocs", "discriminator"]);
  ajv.addSchema({ $id: "keaplink", $defs: retarget(closed(doc.components.schemas)) });
  const compiled = new Map();
  const validator = (schema) => {
    const key = JSON.stringify(schema);
    if (!compiled.has(key)) compiled.set(key, ajv.compile(retarget(closed(schema))));
    return compiled.get(key);
  };
  const deref = (v) => {
    let out = v;
    while (out?.$ref) out = out.$ref.slice(2).split("/").reduce((o, k) => o?.[k], doc);
    return out;
  };
  const templates = Object.keys(doc.paths).map((t) => ({ t, segs: t.split("/").slice(1) }));

  /** The path template `path` falls under, literal segments winning over parameters. */
  function route(path) {
    if (doc.paths[path]) return path;
    const segs = path.split("/").slice(1);
    let best = null;
    for (const { t, segs: ts } of templates) {
      // The proxy's `{path}` is the whole rest, whatever it holds (the proxy judges it).
      const greedy = ts.at(-1) === "{path}";
      if (greedy ? segs.length < ts.length : segs.length !== ts.length) continue;
      let literals = 0;
      const ok = ts.every((s, i) => {
        if (greedy && i === ts.length - 1) return true;
        if (s.startsWith("{")) return segs[i] !== "";
        literals += 1;
        return s === segs[i];
      });
      if (ok && (!best || literals > best.literals)) best = { t, literals };
    }
    return best?.t ?? null;
  }

  function methodsOf(template) {
    const ms = Object.keys(doc.paths[template]).filter((m) => !m.startsWith("x-")).map((m) => m.toUpperCase());
    if (ms.includes("GET")) ms.push("HEAD");
    return ms;
  }

  /**
   * The findings about one recorded answer ({method, path, status, headers, text}): [] when the
   * document describes it. Also returns which operation it was checked against.
   */
  function check(a) {
    const problems = [];
    const template = route(a.path);
    let op = null;
    let resp;
    let label;
    if (!template) {
      label = "(unknown path)";
      resp = deref(doc.components.responses.UnknownPath);
      if (a.status !== 404) problems.push(`status ${a.status} for a path the document does not list (expected 404)`);
    } else {
      const item = doc.paths[template];
      op = a.method.startsWith("x-") ? undefined : item[a.method.toLowerCase()] ?? (a.method === "HEAD" ? item.get : undefined);
      if (!op && item["x-keaplink-static"]) {
        // The asset server's own 405 for another method, or the Worker's 404 for a file that is
        // not there: neither is an answer of the Worker's routes.
        label = `${a.method} ${template} (static, method not listed)`;
        if (a.status !== 405 && a.status !== 404) problems.push(`status ${a.status} for a method a static file does not answer (expected 405 or 404)`);
        return { label, problems };
      }
      if (!op) {
        label = `${a.method} ${template} (method not listed)`;
        resp = deref(doc.components.responses.MethodNotAllowed);
        if (a.status !== 405) problems.push(`status ${a.status} for a method the path does not list (expected 405)`);
        const allow = (a.headers.allow ?? "").split(",").map((s) => s.trim()).filter(Boolean).sort();
        if (a.status === 405 && JSON.stringify(allow) !== JSON.stringify(methodsOf(template).sort())) {
          problems.push(`allow "${a.headers.allow}" is not the documented methods ${methodsOf(template).join(", ")}`);
        }
      } else {
        label = `${op === item.get && a.method === "HEAD" ? "GET" : a.method} ${template}`;
        resp = deref(op.responses[String(a.status)] ?? op.responses.default);
        if (!resp) problems.push(`status ${a.status} is not documented`);
      }
    }
    if (!resp) return { label, problems };

    // Headers: each one sent is documented; each documented as required is sent.
    const documented = Object.fromEntries(Object.entries(resp.headers ?? {}).map(([k, v]) => [k.toLowerCase(), deref(v)]));
    const prefixes = resp["x-keaplink-header-prefixes"] ?? [];
    for (const [name, value] of Object.entries(a.headers)) {
      if (RUNTIME_HEADERS.has(name)) continue;
      const h = documented[name];
      if (!h) {
        if (!prefixes.some((p) => name.startsWith(p))) problems.push(`header ${name} is not documented`);
        continue;
      }
      const v = validator(h.schema ?? {});
      if (!v(value)) problems.push(`header ${name}: ${ajv.errorsText(v.errors)}`);
    }
    for (const [name, h] of Object.entries(documented)) {
      if (h.required && a.headers[name] === undefined) problems.push(`required header ${name} is missing`);
    }

    // The body.
    if (a.method === "HEAD") return { label, problems };
    // The proxy's relayed answer: Keap's body, whatever Keap sent.
    if (resp["x-keaplink-relayed"]) return { label, problems };
    const content = resp.content ?? {};
    if (!Object.keys(content).length) {
      if (a.text) problems.push(`a body where the document says none (${a.text.length} bytes)`);
      return { label, problems };
    }
    const type = (a.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    const media = content[type] ?? content["*/*"];
    if (!media) {
      problems.push(`content-type ${type || "(none)"} is not one of ${Object.keys(content).join(", ")}`);
      return { label, problems };
    }
    if (type !== "application/json") return { label, problems };
    let body;
    try { body = JSON.parse(a.text); } catch { problems.push("the body is not JSON"); return { label, problems }; }
    let schema = media.schema ?? {};
    // The proxy: an answer keaplink made itself says so, and is held to keaplink's error body.
    if (schema.anyOf && a.headers["keaplink-error"] !== undefined) {
      schema = schema.anyOf[0];
      if (body?.error?.code !== a.headers["keaplink-error"]) problems.push(`keaplink-error ${a.headers["keaplink-error"]} is not the body's code`);
      if (a.headers["cache-control"] !== "no-store") problems.push("keaplink's own proxy answer without cache-control: no-store");
    }
    const v = validator(schema);
    if (!v(body)) {
      for (const e of v.errors.slice(0, 5)) {
        const extra = e.keyword === "additionalProperties" ? ` (${e.params.additionalProperty})` : "";
        const allowed = e.keyword === "enum" ? ` (${JSON.stringify(e.params.allowedValues)}, got ${JSON.stringify(e.instancePath.split("/").slice(1).reduce((o, k) => o?.[k], body))})` : "";
        problems.push(`body${e.instancePath} ${e.message}${extra}${allowed}`);
      }
    }
    return { label, problems };
  }

  return { check, route, validator, ajv };
}

/** The recorded records of `kind`; KEAPLINK_TRANSCRIPT points elsewhere (e.g. a copy of one run's files). */
async function transcript(kind) {
  const dir = process.env.KEAPLINK_TRANSCRIPT || TRANSCRIPT;
  let files = [];
  try { files = (await readdir(dir)).filter((f) => f.endsWith(".jsonl")); } catch { /* none */ }
  const out = [];
  for (const f of files) {
    for (const line of (await readFile(join(dir, f), "utf8")).split("\n")) {
      if (!line) continue;
      const r = JSON.parse(line);
      if (r.kind === kind) out.push(r);
    }
  }
  return out;
}
const transcriptAnswers = () => transcript("answer");

/**
 * The findings about one webhook delivery a test receiver got ({method, headers, body}): [] when
 * the document's `webhooks` describe it (its event, its headers, its body with no undocumented
 * field). Also returns the event's type.
 */
export function checkWebhook(d, doc = DOC, { validator, ajv } = makeChecker(doc)) {
  const problems = [];
  let body;
  try { body = JSON.parse(d.body); } catch { return { type: "(not JSON)", problems: ["the body is not JSON"] }; }
  // Keap's events are one webhook for every event key: `keap.{event_key}`.
  const type = typeof body?.type === "string" && body.type.startsWith("keap.") && !doc.webhooks?.[body.type] ? "keap.{event_key}" : body?.type;
  const op = doc.webhooks?.[type]?.[d.method.toLowerCase()];
  if (!op) return { type: String(type), problems: [`${d.method} of an event ${JSON.stringify(type)} the document's webhooks do not describe`] };
  for (const p of op.parameters ?? []) {
    if (p.in !== "header") continue;
    const value = d.headers[p.name.toLowerCase()];
    if (value === undefined) {
      if (p.required) problems.push(`required header ${p.name} is missing`);
      continue;
    }
    const v = validator(p.schema ?? {});
    if (!v(value)) problems.push(`header ${p.name}: ${ajv.errorsText(v.errors)}`);
  }
  if (d.headers["keaplink-event-id"] !== undefined && d.headers["keaplink-event-id"] !== body.id) problems.push("keaplink-event-id is not the body's id");
  const type_ = (d.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
  const media = op.requestBody?.content?.[type_];
  if (!media) return { type, problems: [...problems, `content-type ${type_ || "(none)"} is not the document's`] };
  const v = validator(media.schema);
  if (!v(body)) {
    for (const e of v.errors.slice(0, 5)) {
      const extra = e.keyword === "additionalProperties" ? ` (${e.params.additionalProperty})` : "";
      problems.push(`body${e.instancePath} ${e.message}${extra}`);
    }
  }
  return { type, problems };
}

test("every answer the end-to-end suite received is one the OpenAPI document describes", async (t) => {
  const answers = await transcriptAnswers();
  const { check } = makeChecker();
  const findings = new Map();
  const ops = new Map();
  for (const a of answers) {
    const { label, problems } = check(a);
    ops.set(label, (ops.get(label) ?? 0) + 1);
    for (const p of problems) {
      const key = `${label} → ${a.status}: ${p}`;
      const f = findings.get(key) ?? { count: 0, example: `${a.method} ${a.path}: ${a.text.slice(0, 200)}` };
      f.count += 1;
      findings.set(key, f);
    }
  }
  t.diagnostic(`${answers.length} answers under ${ops.size} labels: ${[...ops].map(([k, n]) => `${k} ×${n}`).join("; ")}`);
  const used = new Set();
  for (const key of [...findings.keys()]) {
    const p = PENDING.find((e) => new RegExp(e.match).test(key));
    if (!p) continue;
    used.add(p);
    t.diagnostic(`pending (${p.reason}): ${key} ×${findings.get(key).count}`);
    findings.delete(key);
  }
  for (const p of PENDING.filter((e) => !used.has(e))) t.diagnostic(`pending entry no longer seen (remove it once fixed): ${p.match}`);
  const list = [...findings].map(([k, f]) => `${k} (×${f.count}; e.g. ${f.example})`);
  assert.deepEqual(list, [], `${list.length} kinds of answer the document does not describe`);
  // A transcript this small means the suite did not run: nothing was proven.
  assert.ok(answers.length >= MIN_ANSWERS, `only ${answers.length} recorded answers (at least ${MIN_ANSWERS}): run the end-to-end suite first`);
  // Every documented operation was answered at least once (by the end-to-end suite or by
  // schemathesis): an operation nothing called is one whose answers nothing checked.
  const unseen = operations().filter((o) => !ops.has(o));
  assert.deepEqual(unseen, [], `documented operations no answer of the run came from: ${unseen.join(", ")}`);
});

test("every webhook the end-to-end suite received is one the document's webhooks describe", async (t) => {
  const received = await transcript("webhook");
  const checker = makeChecker();
  const findings = new Map();
  const types = new Map();
  for (const d of received) {
    const { type, problems } = checkWebhook(d, DOC, checker);
    types.set(type, (types.get(type) ?? 0) + 1);
    for (const p of problems) {
      const key = `${type}: ${p}`;
      findings.set(key, (findings.get(key) ?? 0) + 1);
    }
  }
  t.diagnostic(`${received.length} deliveries: ${[...types].map(([k, n]) => `${k} ×${n}`).join("; ")}`);
  const list = [...findings].map(([k, n]) => `${k} (×${n})`);
  assert.deepEqual(list, [], `${list.length} kinds of delivery the document does not describe`);
  // Every documented event was sent by some test: an event nothing sent is one nothing checked.
  const unseen = Object.keys(DOC.webhooks).filter((e) => !types.has(e));
  assert.deepEqual(unseen, [], `documented events no delivery of the run (tests/e2e/receiver.mjs records them) was: ${unseen.join(", ")}`);
});

test("the webhook check catches an undocumented event, field and header", () => {
  const body = {
    id: "evt_0123456789abcdef0123456789abcdef", type: "connection.created", created_at: "2026-01-01T00:00:00Z",
    partner_id: "acme", user: "u1",
    connection: {
      id: "8uLmQJ6sZ3x2WmN1pQr4Tw", keap_app: "ab123", keap_app_name: null,
      keap_user: { email: "ann@ab123.example", name: "Ann" }, status: "active",
      connected_at: "2026-01-01T00:00:00Z", refreshed_at: null, reconnected_at: null, access_expires_at: "2026-01-02T00:00:00Z",
      refresh_expires_at: "2026-02-15T00:00:00Z", reconnect_before: null, last_error: null,
    },
  };
  const headers = { "content-type": "application/json", "keaplink-event-id": body.id, "keaplink-signature": `t=1767225600,v1=${"ab".repeat(32)}` };
  const good = { method: "POST", headers, body: JSON.stringify(body) };
  assert.deepEqual(checkWebhook(good).problems, []);
  assert.match(checkWebhook({ ...good, body: JSON.stringify({ ...body, type: "connection.updated" }) }).problems.join("\n"), /do not describe/);
  assert.match(checkWebhook({ ...good, body: JSON.stringify({ ...body, access_token: "x" }) }).problems.join("\n"), /additional properties \(access_token\)/);
  // A repair link belongs to needs_reauth and expiring only.
  assert.match(checkWebhook({ ...good, body: JSON.stringify({ ...body, repair_url: "https://k.example/link/x" }) }).problems.join("\n"), /additional properties \(repair_url\)/);
  const reauth = { ...body, type: "connection.needs_reauth", repair_url: "https://k.example/link/x" };
  assert.deepEqual(checkWebhook({ ...good, body: JSON.stringify(reauth) }).problems, []);
  assert.match(checkWebhook({ ...good, headers: { ...headers, "keaplink-signature": undefined } }).problems.join("\n"), /required header keaplink-signature is missing/);
  assert.match(checkWebhook({ ...good, headers: { ...headers, "keaplink-signature": "v1=zz" } }).problems.join("\n"), /header keaplink-signature: .*must match pattern/);
  assert.match(checkWebhook({ ...good, headers: { ...headers, "keaplink-event-id": "evt_ffffffffffffffffffffffffffffffff" } }).problems.join("\n"), /not the body's id/);
  const { connection, ...noConnection } = body;
  void connection;
  assert.match(checkWebhook({ ...good, body: JSON.stringify(noConnection) }).problems.join("\n"), /required property 'connection'/);
});

test("every example in the document matches its own schema", () => {
  const { validator, ajv } = makeChecker();
  let n = 0;
  const failures = [];
  const visit = (where, media) => {
    if (!media?.schema) return;
    const v = validator(media.schema);
    const examples = [
      ...(media.example !== undefined ? [["example", media.example]] : []),
      ...Object.entries(media.examples ?? {}).map(([k, e]) => [k, e.value]),
    ];
    for (const [name, value] of examples) {
      n += 1;
      if (!v(value)) failures.push(`${where} ${name}: ${ajv.errorsText(v.errors)}`);
    }
  };
  for (const [path, item] of Object.entries(DOC.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (method.startsWith("x-")) continue;
      for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) visit(`${method} ${path} request ${type}`, media);
      for (const [status, r] of Object.entries(op.responses)) {
        if (r.$ref) continue;
        for (const [type, media] of Object.entries(r.content ?? {})) visit(`${method} ${path} ${status} ${type}`, media);
      }
    }
  }
  for (const [name, r] of Object.entries(DOC.components.responses)) {
    for (const [type, media] of Object.entries(r.content ?? {})) visit(`components.responses.${name} ${type}`, media);
  }
  for (const [event, item] of Object.entries(DOC.webhooks ?? {})) {
    for (const [type, media] of Object.entries(item.post.requestBody.content)) visit(`webhook ${event} ${type}`, media);
  }
  assert.deepEqual(failures, []);
  assert.ok(n >= 50, `${n} examples checked`);
});

test("the check catches an undocumented field, status, code, header and operation", () => {
  const { check } = makeChecker();
  const conn = {
    id: "8uLmQJ6sZ3x2WmN1pQr4Tw", keap_app: "ab123", keap_app_name: null,
    keap_user: { email: "ann@ab123.example", name: "Ann" }, status: "active",
    connected_at: "2026-01-01T00:00:00Z", refreshed_at: null, reconnected_at: null, access_expires_at: "2026-01-02T00:00:00Z",
    refresh_expires_at: "2026-02-15T00:00:00Z", reconnect_before: null, last_error: null,
  };
  const json = { "content-type": "application/json", "cache-control": "no-store", "x-request-id": "0123456789abcdef" };
  const good = { method: "GET", path: "/v1/me/connections", status: 200, headers: json, text: JSON.stringify({ connections: [conn] }) };
  assert.deepEqual(check(good).problems, [], "a good answer passes");
  assert.equal(check(good).label, "GET /v1/me/connections");

  const extraField = { ...good, text: JSON.stringify({ connections: [{ ...conn, token: "x" }] }) };
  assert.match(check(extraField).problems.join("\n"), /must NOT have additional properties \(token\)/);
  const missingField = { ...good, text: JSON.stringify({ connections: [{ ...conn, status: undefined }] }) };
  assert.match(check(missingField).problems.join("\n"), /must have required property 'status'/);
  const badStatus = { ...good, status: 418 };
  assert.match(check(badStatus).problems.join("\n"), /status 418 is not documented/);
  const err = (code, status = 404) => ({
    method: "POST", path: "/v1/token", status, headers: json, text: JSON.stringify({ error: { code, message: "m" } }),
  });
  assert.deepEqual(check(err("no_connection")).problems, []);
  // A real code, but not one this operation answers with 404.
  assert.match(check(err("partner_not_found")).problems.join("\n"), /body\/error\/code must be equal to one of the allowed values/);
  assert.match(check(err("made_up")).problems.join("\n"), /allowed values/);
  const extraHeader = { ...good, headers: { ...json, "x-debug": "1" } };
  assert.match(check(extraHeader).problems.join("\n"), /header x-debug is not documented/);
  const noRequestId = { ...good, headers: { "content-type": "application/json", "cache-control": "no-store" } };
  assert.match(check(noRequestId).problems.join("\n"), /required header x-request-id is missing/);
  const wrongType = { ...good, headers: { ...json, "content-type": "text/plain" } };
  assert.match(check(wrongType).problems.join("\n"), /content-type text\/plain is not one of/);

  // No operation: an unlisted path must be the documented 404; an unlisted method the 405.
  const nf = { method: "GET", path: "/v1/nope", status: 404, headers: json, text: JSON.stringify({ error: { code: "not_found", message: "m" } }) };
  assert.deepEqual(check(nf).problems, []);
  assert.match(check({ ...nf, status: 200 }).problems.join("\n"), /expected 404/);
  assert.equal(check({ method: "PUT", path: "/widget/keap-link.js", status: 405, headers: {}, text: "" }).problems.length, 0, "the asset server's own 405");
  assert.match(check({ method: "PUT", path: "/widget/keap-link.js", status: 200, headers: {}, text: "" }).problems.join("\n"), /expected 405 or 404/);
  const wrongMethod = { method: "PUT", path: "/v1/me/connections", status: 405, headers: { ...json, allow: "GET, HEAD, OPTIONS" }, text: JSON.stringify({ error: { code: "method_not_allowed", message: "m" } }) };
  assert.deepEqual(check(wrongMethod).problems, []);
  assert.match(check({ ...wrongMethod, headers: { ...json, allow: "GET" } }).problems.join("\n"), /not the documented methods/);
  assert.equal(check({ ...good, path: "/v1/connections/8uLmQJ6sZ3x2WmN1pQr4Tw" }).label, "GET /v1/connections/{id}");
  assert.equal(check({ ...good, path: "/v1/keap/crm/rest/v2/contacts" }).label, "GET /v1/keap/{path}");
  assert.equal(check({ ...good, path: "/v1/keap//evil.example/x" }).label, "GET /v1/keap/{path}");
  // The proxy: Keap's own 404 is relayed as it is; keaplink's own is held to its error body.
  const keap404 = { method: "GET", path: "/v1/keap/crm/rest/v2/contacts/1", status: 404, headers: { "content-type": "application/json", "x-request-id": "ab", "keaplink-connection-id": "c" }, text: '{"message":"Contact 1 not found"}' };
  assert.deepEqual(check(keap404).problems, []);
  const own404 = { ...keap404, headers: { ...json, "keaplink-error": "no_connection" }, text: JSON.stringify({ error: { code: "no_connection", message: "m" } }) };
  assert.deepEqual(check(own404).problems, []);
  assert.match(check({ ...own404, headers: { ...own404.headers, "keaplink-error": "needs_reauth" } }).problems.join("\n"), /not the body's code/);
  assert.match(check({ ...own404, text: JSON.stringify({ error: { code: "no_connection", message: "m", extra: 1 } }) }).problems.join("\n"), /additional properties \(extra\)/);
});
