// A partner's webhook endpoint on loopback, for the tests: records every delivery, answers the
// statuses a test plans (204 otherwise), and checks signatures as a partner's back-end would.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createHmac, timingSafeEqual } from "node:crypto";
import { freePort, record } from "./harness.mjs";

export async function startReceiver() {
  const port = await freePort();
  const deliveries = [];
  const planned = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => { body += d; });
    req.on("end", () => {
      const status = planned.shift() ?? 204;
      deliveries.push({ headers: req.headers, body, status, at: Date.now() });
      // For tests/checks/contract.test.mjs: every delivery against the document's `webhooks`.
      const headers = Object.fromEntries(["content-type", "keaplink-signature", "keaplink-event-id"].map((h) => [h, req.headers[h]]));
      record("webhook", { method: req.method, headers, body });
      // A repair link sent in an event is a secret of the partner's from here on.
      for (const m of body.matchAll(/\/link\/([A-Za-z0-9_-]{43})/g)) record("secrets", { values: [m[1]] });
      res.writeHead(status).end();
    });
  });
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${port}/keaplink`,
    deliveries,
    /** The next deliveries are answered with these statuses, in order. */
    plan: (...statuses) => planned.push(...statuses),
    /** Waits until some delivery matches `pred`; returns all that do. */
    async waitFor(pred, what, ms = 30_000) {
      const until = Date.now() + ms;
      while (Date.now() < until) {
        const hit = deliveries.filter(pred);
        if (hit.length) return hit;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`no ${what} within ${ms} ms; got ${deliveries.map((d) => `${d.status} ${d.body.slice(0, 60)}`).join(" | ")}`);
    },
    stop: () => new Promise((r) => server.close(r)),
  };
}

/** What a partner does on receipt: check the signature with the key derived from its session secret. */
export function verifyDelivery(d, sessionSecret) {
  const [, t, v1] = d.headers["keaplink-signature"].match(/^t=(\d+),v1=([0-9a-f]{64})$/);
  const key = createHmac("sha256", sessionSecret).update("keaplink-webhook-v1").digest();
  const expected = createHmac("sha256", key).update(`${t}.${d.body}`).digest();
  assert.ok(timingSafeEqual(expected, Buffer.from(v1, "hex")), "signature verifies");
  assert.ok(Math.abs(Date.now() / 1000 - Number(t)) < 120, "fresh timestamp");
  const event = JSON.parse(d.body);
  assert.equal(d.headers["keaplink-event-id"], event.id);
  return event;
}

/** A successful delivery of an event of `type`. */
export const ofType = (type) => (d) => d.status < 300 && JSON.parse(d.body).type === type;
