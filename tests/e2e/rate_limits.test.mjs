// Abuse limits: per address and per partner on connect, callback and the token endpoint. The
// Worker runs with small limits here (wrangler.toml's counts replaced, periods kept); the local
// limiter counts in fixed windows, as Cloudflare's does per location.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack } from "./harness.mjs";
import { call, linkUser, mintSession, putPartner } from "./client.mjs";

let stack;
let acme;
let globex;

const LIMITS = { LIMIT_FLOW_IP: 6, LIMIT_FLOW_PARTNER: 10, LIMIT_TOKEN_IP: 30, LIMIT_TOKEN_PARTNER: 20 };

before(async () => {
  stack = await startStack({ limits: LIMITS });
  acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  globex = await putPartner(stack.url, "globex", { origins: ["https://globex.example"] });
  // One linked user per partner, so token requests succeed when allowed.
  for (const [p, origin, email] of [[acme, "https://acme.example", "ann@ab123.example"], [globex, "https://globex.example", "bob@cd456.example"]]) {
    await linkUser(stack, p, "u1", email, { origin, headers: { "cf-connecting-ip": "198.51.100.250" } });
  }
});
after(async () => { await stack?.stop(); });

/** Waits for the start of a fresh window of `period` seconds, with `margin` seconds of it left to use. */
async function freshWindow(period, margin = 4) {
  const into = (Date.now() / 1000) % period;
  if (into > period - margin - 1) await new Promise((r) => setTimeout(r, (period - into + 0.05) * 1000));
}

const token = (p, ip, user = "u1") =>
  call(stack.url, "POST", "/v1/token", { token: p.api_key, body: { user }, headers: { "cf-connecting-ip": ip } });

function assertThrottled(res, period) {
  assert.equal(res.status, 429, res.text);
  assert.equal(res.json.error.code, "rate_limited");
  assert.equal(res.headers.get("retry-after"), String(period));
}

test("token: a burst from one partner gets 429 with retry-after; another partner is untouched; the window passes", async () => {
  await freshWindow(10, 6);
  const burst = await Promise.all(Array.from({ length: 30 }, (_, i) => token(acme, `203.0.113.${i}`)));
  const ok = burst.filter((r) => r.status === 200).length;
  const limited = burst.filter((r) => r.status === 429);
  assert.equal(ok, LIMITS.LIMIT_TOKEN_PARTNER, "exactly the partner's limit passes");
  assert.equal(limited.length, 30 - LIMITS.LIMIT_TOKEN_PARTNER);
  for (const r of limited) assertThrottled(r, 10);
  assert.match(limited[0].json.error.message, /for this partner/);
  // Honest traffic of another partner in the same window still passes.
  const other = await token(globex, "203.0.113.200");
  assert.equal(other.status, 200, other.text);
  // After retry-after, acme passes again.
  await new Promise((r) => setTimeout(r, 10_500));
  assert.equal((await token(acme, "203.0.113.1")).status, 200);
});

test("token: one address is limited across partners, whatever key it presents, other addresses are not", async () => {
  await freshWindow(10, 6);
  const ip = "192.0.2.77";
  const answers = [];
  for (let i = 0; i < 16; i++) answers.push(await token(i % 2 ? acme : globex, ip));
  // Wrong keys count too: guessing keys from one address runs into the same limit.
  for (let i = 0; i < 16; i++) {
    answers.push(await call(stack.url, "POST", "/v1/token", {
      token: `klk.acme.${"A".repeat(43)}`, body: { user: "u1" }, headers: { "cf-connecting-ip": ip },
    }));
  }
  const limited = answers.filter((r) => r.status === 429);
  assert.equal(answers.length - limited.length, LIMITS.LIMIT_TOKEN_IP);
  assert.equal(answers.slice(0, 16).filter((r) => r.status === 200).length, 16, "the honest 16 came first and passed");
  for (const r of limited) assertThrottled(r, 10);
  assert.match(limited[0].json.error.message, /from this address/);
  assert.equal((await token(acme, "192.0.2.78")).status, 200, "another address passes");
});

test("connect: per address, 429 with retry-after and CORS so the widget can read it", async () => {
  await freshWindow(60, 10);
  const session = await mintSession(acme, "u2");
  const ip = "192.0.2.10";
  const answers = [];
  for (let i = 0; i < LIMITS.LIMIT_FLOW_IP + 3; i++) {
    answers.push(await call(stack.url, "POST", "/v1/me/connect", {
      token: session, headers: { origin: "https://acme.example", "cf-connecting-ip": ip }, body: {},
    }));
  }
  assert.deepEqual(answers.map((r) => r.status), [...Array(LIMITS.LIMIT_FLOW_IP).fill(200), 429, 429, 429]);
  const last = answers.at(-1);
  assertThrottled(last, 60);
  assert.equal(last.headers.get("access-control-allow-origin"), "https://acme.example");
  // A user elsewhere is not affected.
  const other = await call(stack.url, "POST", "/v1/me/connect", {
    token: await mintSession(acme, "u3"), headers: { origin: "https://acme.example", "cf-connecting-ip": "192.0.2.11" }, body: {},
  });
  assert.equal(other.status, 200, other.text);
});

test("connect: per partner across addresses; the other partner still connects", async () => {
  const initech = await putPartner(stack.url, "initech", { origins: ["https://initech.example"] });
  await freshWindow(60, 10);
  const answers = [];
  for (let i = 0; i < LIMITS.LIMIT_FLOW_PARTNER + 2; i++) {
    answers.push(await call(stack.url, "POST", "/v1/me/connect", {
      token: await mintSession(initech, `i${i}`), headers: { origin: "https://initech.example", "cf-connecting-ip": `198.51.100.${i}` }, body: {},
    }));
  }
  assert.deepEqual(answers.map((r) => r.status), [...Array(LIMITS.LIMIT_FLOW_PARTNER).fill(200), 429, 429]);
  assert.match(answers.at(-1).json.error.message, /for this partner/);
  const acmeConnect = await call(stack.url, "POST", "/v1/me/connect", {
    token: await mintSession(acme, "u4"), headers: { origin: "https://acme.example", "cf-connecting-ip": "198.51.100.99" }, body: {},
  });
  assert.equal(acmeConnect.status, 200, acmeConnect.text);
});

test("callback: per address, before the state is looked at: a flood of guessed states is cut off and spends nothing", async () => {
  await freshWindow(60, 10);
  const ip = "192.0.2.99";
  const statuses = [];
  let last;
  for (let i = 0; i < LIMITS.LIMIT_FLOW_IP + 2; i++) {
    last = await call(stack.url, "GET", `/oauth/callback?code=c${i}&state=${"A".repeat(42)}${i % 10}`, { headers: { "cf-connecting-ip": ip } });
    statuses.push(last.status);
  }
  assert.deepEqual(statuses, [...Array(LIMITS.LIMIT_FLOW_IP).fill(400), 429, 429]);
  assert.equal(last.headers.get("retry-after"), "60");
  assert.match(last.headers.get("content-type"), /text\/html/);
  assert.match(last.text, /Too many sign-in attempts/);
  assert.match(last.headers.get("content-security-policy"), /frame-ancestors 'none'/);
});
