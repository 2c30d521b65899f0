// What a partner and a browser do against the Worker: register a partner, mint session JWTs,
// and walk the OAuth flow with a real cookie jar, following real redirects.
import { SignJWT } from "jose";
import { ADMIN_TOKEN, isWorkerUrl, record } from "./harness.mjs";

export async function call(base, method, path, { token, body, headers = {}, raw } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  let payload;
  if (raw !== undefined) payload = raw;
  else if (body !== undefined) {
    payload = JSON.stringify(body);
    h["content-type"] = "application/json";
  }
  const res = await fetch(`${base}${path}`, { method, headers: h, body: payload, redirect: "manual" });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  recordAnswer(base, method, path, res, text);
  return { status: res.status, headers: res.headers, text, json };
}

/** Notes a Worker's answer for the secrets check (tests/checks/secrets.test.mjs). */
function recordAnswer(base, method, path, res, text) {
  if (!isWorkerUrl(base)) return;
  // A repair link's token is a secret from here on: no other answer or log may carry it.
  for (const m of text.matchAll(/\/link\/([A-Za-z0-9_-]{43})/g)) record("secrets", { values: [m[1]] });
  record("answer", {
    method,
    path: new URL(path, base).pathname,
    status: res.status,
    headers: Object.fromEntries(res.headers),
    text,
  });
}

/** Registers (or updates) a partner; returns its view, with secrets when created. `extra` goes
 * into the body as it is (webhook_url, reconnect_identity, webhook_repair_links). */
export async function putPartner(base, id, { origins = [], returnUrls = [], rotate = false, name = `Partner ${id}`, extra = {} } = {}) {
  const res = await call(base, "PUT", `/v1/admin/partners/${id}`, {
    token: ADMIN_TOKEN,
    body: { name, allowed_origins: origins, return_urls: returnUrls, rotate_secrets: rotate, ...extra },
  });
  if (res.status !== 200) throw new Error(`putPartner ${id}: ${res.status} ${res.text}`);
  record("secrets", { values: [res.json.api_key, res.json.session_secret].filter(Boolean) });
  return res.json;
}

export async function mintSession(partner, user, { secret = partner.session_secret, alg = "HS256", iat, exp, aud = "keaplink", iss = partner.partner_id } = {}) {
  const now = Math.floor(Date.now() / 1000);
  record("secrets", { values: [secret] });
  const jwt = await new SignJWT({})
    .setProtectedHeader({ alg })
    .setIssuer(iss)
    .setSubject(user)
    .setAudience(aud)
    .setIssuedAt(iat ?? now)
    .setExpirationTime(exp ?? now + 600)
    .sign(new TextEncoder().encode(secret));
  record("secrets", { values: [jwt] });
  return jwt;
}

/** A browser's cookie jar, per host:port, enough for the sandbox's SSO cookie. */
export class Browser {
  constructor() { this.jar = new Map(); this.visited = []; }

  cookieHeader(url) {
    const host = new URL(url).host;
    const jar = this.jar.get(host);
    return jar ? [...jar].map(([k, v]) => `${k}=${v}`).join("; ") : undefined;
  }

  store(url, res) {
    const host = new URL(url).host;
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(";");
      const [k, v] = pair.split("=");
      const jar = this.jar.get(host) ?? new Map();
      if (attrs.some((a) => /max-age=0/i.test(a.trim())) || v === "") jar.delete(k.trim());
      else jar.set(k.trim(), v);
      this.jar.set(host, jar);
    }
  }

  /** GET or POST (form), following redirects; returns the final response and its URL. */
  async go(url, { form } = {}) {
    let method = form ? "POST" : "GET";
    let body = form ? new URLSearchParams(form).toString() : undefined;
    for (let hop = 0; hop < 10; hop++) {
      this.visited.push(url);
      const headers = {};
      const cookie = this.cookieHeader(url);
      if (cookie) headers.cookie = cookie;
      if (body) headers["content-type"] = "application/x-www-form-urlencoded";
      const res = await fetch(url, { method, headers, body, redirect: "manual" });
      this.store(url, res);
      if (isWorkerUrl(url)) {
        const copy = res.clone();
        recordAnswer(url, method, url, copy, await copy.text());
      }
      if ([301, 302, 303, 307].includes(res.status)) {
        const next = new URL(res.headers.get("location"), url).toString();
        // Only loopback is reachable; a partner's own page is where the journey ends.
        if (new URL(next).hostname !== "127.0.0.1") return { res, url, location: next, text: "" };
        url = next;
        if (res.status !== 307) { method = "GET"; body = undefined; }
        continue;
      }
      return { res, url, text: await res.text() };
    }
    throw new Error("too many redirects");
  }
}

/** Pulls a form's hidden inputs out of a sandbox page. */
export function hiddenInputs(html) {
  const out = {};
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    out[m[1]] = m[2].replaceAll("&amp;", "&").replaceAll("&quot;", '"').replaceAll("&lt;", "<").replaceAll("&gt;", ">");
  }
  return out;
}

/**
 * From an authorize URL to the callback's answer: (logout hop) → login if asked → consent →
 * callback. Returns the final page and whether a login page was shown.
 */
export async function linkThroughSandbox(browser, sandboxUrl, authorizeUrl, { email, password = "keap", decision = "allow", app }) {
  let page = await browser.go(authorizeUrl);
  let sawLogin = false;
  if (page.text.includes('data-page="login"')) {
    sawLogin = true;
    page = await browser.go(`${sandboxUrl}/app/oauth/login`, { form: { ...hiddenInputs(page.text), email, password } });
  }
  if (!page.text.includes('data-page="consent"')) throw new Error(`expected the consent page, got ${page.url}:\n${page.text.slice(0, 500)}`);
  const consentFor = page.text.match(/id="email">([^<]+)</)?.[1];
  // A Keap user with several apps picks one on the consent page (the first by default).
  const form = { ...hiddenInputs(page.text), decision, ...(app ? { app } : {}) };
  const final = await browser.go(`${sandboxUrl}/app/oauth/consent`, { form });
  return { final, sawLogin, consentFor };
}

/**
 * Links partner user `user` (of `partner`, a putPartner answer) to the Keap user `email`'s app,
 * as the widget's popup would: `POST /v1/me/connect`, then Keap's pages in `browser` (a fresh one
 * by default: it has to sign in). `origin`/`headers`/`body` go with the connect call. Throws unless
 * the flow ends connected (or, with `expect: "error"`, with an error page). Returns the connection
 * id, the journey through the pages, and the authorize URL.
 */
export async function linkUser(stack, partner, user, email, { origin, headers = {}, body = {}, browser = new Browser(), decision = "allow", app, expect = "connected" } = {}) {
  const base = stack.worker?.url ?? stack.url;
  const res = await call(base, "POST", "/v1/me/connect", {
    token: await mintSession(partner, user),
    headers: origin ? { origin, ...headers } : headers,
    body,
  });
  if (res.status !== 200) throw new Error(`connect for ${user}: ${res.status} ${res.text}`);
  const journey = await linkThroughSandbox(browser, stack.sandbox.url, res.json.authorize_url, { email, decision, app });
  const text = journey.final.text;
  const connected = /"status":"connected"|Keap connected/.test(text) || /keaplink=connected/.test(journey.final.location ?? "");
  if ((expect === "connected") !== connected) {
    throw new Error(`linking ${user} to ${email}: expected ${expect}, got ${journey.final.url}:\n${text.slice(0, 400)}`);
  }
  return { connectionId: text.match(/"connection_id":"([^"]+)"/)?.[1], journey, authorizeUrl: res.json.authorize_url };
}

/** The Worker's JSON log lines of one `event` kind so far, parsed. */
export function logEvents(worker, event) {
  return worker.logs.join("").split("\n")
    // wrangler colours error lines: strip its escape sequences around the JSON.
    .map((l) => l.replace(/\u001b\[[0-9;]*m/g, ""))
    .filter((l) => l.includes(`"event":"${event}"`))
    .map((l) => JSON.parse(l.slice(l.indexOf("{"))));
}

/**
 * The request log line of the answer whose `x-request-id` is `id`, waited for (it is written
 * after the answer, in `waitUntil`): up to 5 s, then `undefined`.
 */
export async function requestLine(worker, id) {
  for (let i = 0; i < 100; i++) {
    const line = logEvents(worker, "request").find((e) => e.id === id);
    if (line) return line;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

/** Runs the cron sweep on `worker` and returns the report it logged. */
export async function runSweep(worker, { timeoutMs = 10_000 } = {}) {
  const from = worker.logs.length;
  // A long sweep (the bench's million links) may outlast fetch's own wait for an answer: its
  // report line is what counts.
  let failed = null;
  const answered = fetch(`${worker.url}/__scheduled?cron=17+*+*+*+*`).then(
    (res) => { if (res.status !== 200) failed = new Error(`the sweep answered ${res.status}`); },
    (err) => { if (timeoutMs <= 10_000) failed = err; },
  );
  if (timeoutMs <= 10_000) await answered;
  for (let i = 0; i < timeoutMs / 50; i++) {
    if (failed) throw failed;
    const line = worker.logs.slice(from).join("").split("\n").find((l) => l.includes('"event":"sweep"'));
    if (line) return JSON.parse(line.slice(line.indexOf("{")));
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the sweep logged no report");
}
