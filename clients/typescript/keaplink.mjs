// keaplink's API client: openapi-fetch over the types openapi-typescript generates from the
// OpenAPI document (schema.d.ts, from docs/openapi.json). Plain JavaScript with JSDoc types, so
// Node runs it as it is and TypeScript checks it (and every caller) against the document.
import createClient from "openapi-fetch";

/** @typedef {import("./schema.js").paths} paths */
/** @typedef {import("./schema.js").components} components */
/** @typedef {import("openapi-fetch").Client<paths>} KeaplinkClient */

/**
 * A client for keaplink's Worker. `credential` is sent as `Authorization: Bearer`: the partner's
 * API key (back-end and console operations), a user's session JWT (`/v1/me/*`), or the admin token.
 * @param {{ baseUrl: string, credential: string, fetch?: typeof globalThis.fetch }} options
 * @returns {KeaplinkClient}
 */
export function createKeaplink({ baseUrl, credential, fetch }) {
  if (!baseUrl) throw new Error("createKeaplink: baseUrl is required (the Worker's origin)");
  if (!credential) throw new Error("createKeaplink: credential is required (API key, session JWT or admin token)");
  /** @type {KeaplinkClient} */
  const client = createClient({ baseUrl, ...(fetch ? { fetch } : {}) });
  client.use({
    onRequest({ request }) {
      request.headers.set("authorization", `Bearer ${credential}`);
      return request;
    },
  });
  return client;
}

/**
 * The error keaplink answered, as an Error: `code` (branch on it), `status`, and `retryAfter`
 * (seconds, on a 429).
 */
export class KeaplinkError extends Error {
  /**
   * @param {number} status
   * @param {{ error: { code: string, message: string } } | undefined} body
   * @param {Headers} headers
   */
  constructor(status, body, headers) {
    super(body ? `${body.error.code}: ${body.error.message}` : `keaplink answered ${status}`);
    this.name = "KeaplinkError";
    this.status = status;
    this.code = body?.error.code ?? "unknown";
    this.retryAfter = Number(headers.get("retry-after")) || undefined;
  }
}

/** @typedef {components["schemas"]["WebhookEvent"]} KeaplinkEvent Any event keaplink sends, told apart by `type`. */
/** @typedef {KeaplinkEvent["type"]} KeaplinkEventType */

/** Why a webhook delivery was refused by {@link verifyWebhook}. */
export class KeaplinkWebhookError extends Error {
  /**
   * @param {"malformed" | "stale" | "mismatch" | "event_id"} reason
   * @param {string} message
   */
  constructor(reason, message) {
    super(message);
    this.name = "KeaplinkWebhookError";
    this.reason = reason;
  }
}

const encoder = new TextEncoder();

/** @param {string} secret @param {BufferSource} data */
async function hmac(secret, data) {
  const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, data));
}

/**
 * Checks one webhook delivery as the document's `webhooks` say, and returns its event. Give it the
 * raw body (as received, before any JSON parsing) and the two headers; it refuses (throwing a
 * {@link KeaplinkWebhookError}) a malformed or missing `keaplink-signature`, a timestamp more than
 * `toleranceSecs` from now, a signature that is not the HMAC-SHA256 of `<t>.<body>` under the key
 * derived from the partner's `session_secret`, and a `keaplink-event-id` that is not the body's
 * `id`. Deduplicate on the returned event's `id`. Web Crypto only: Node 20+, Deno, Bun, Workers.
 * @param {{ body: string | Uint8Array, signature: string | null | undefined, eventId?: string | null, sessionSecret: string, toleranceSecs?: number, now?: number }} delivery
 * @returns {Promise<KeaplinkEvent>}
 */
export async function verifyWebhook({ body, signature, eventId, sessionSecret, toleranceSecs = 300, now = Date.now() / 1000 }) {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signature ?? "");
  if (!m) throw new KeaplinkWebhookError("malformed", "keaplink-signature is missing or not t=<unix>,v1=<64 hex>");
  if (Math.abs(now - Number(m[1])) > toleranceSecs) {
    throw new KeaplinkWebhookError("stale", `keaplink-signature's timestamp is more than ${toleranceSecs} s from this clock`);
  }
  const raw = typeof body === "string" ? encoder.encode(body) : body;
  const prefix = encoder.encode(`${m[1]}.`);
  const signed = new Uint8Array(prefix.length + raw.length);
  signed.set(prefix);
  signed.set(raw, prefix.length);
  const webhookKey = await hmac(sessionSecret, encoder.encode("keaplink-webhook-v1"));
  const key = await crypto.subtle.importKey("raw", webhookKey, { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  const given = new Uint8Array(32);
  for (let i = 0; i < 32; i += 1) given[i] = parseInt(m[2].slice(2 * i, 2 * i + 2), 16);
  // verify compares in constant time.
  if (!(await crypto.subtle.verify("HMAC", key, given, signed))) {
    throw new KeaplinkWebhookError("mismatch", "keaplink-signature does not match this body and session secret");
  }
  /** @type {KeaplinkEvent} */
  const event = JSON.parse(new TextDecoder().decode(raw));
  if (eventId != null && eventId !== event.id) {
    throw new KeaplinkWebhookError("event_id", "keaplink-event-id is not the body's id");
  }
  return event;
}
