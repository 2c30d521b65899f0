// A partner back-end's touch points with keaplink, in Node (>= 18) with `jose` and keaplink's
// client generated from its OpenAPI document (clients/typescript: copy it into your project and
// `npm i openapi-fetch`; TypeScript checks every call against the document):
//   1. mint the session JWT the widget presents for the signed-in user (serve it from your
//      own authenticated endpoint and point the widget's `session-url` at it);
//   2. call Keap's REST API as one of your users, through keaplink (from a cron, a queue, a
//      Lambda): keaplink adds the token, heals a stale one and keeps you inside Keap's quota;
//   3. or get a fresh Keap access token for one of your users and call Keap yourself;
//   4. make a repair link to mail a user whose link needs them (after connection.needs_reauth);
//   5. verify a webhook keaplink sent you;
//   6. subscribe a user's link to Keap's events (contact.add, invoice.add, ...), and receive them:
//      signed like every webhook, deduplicated by event id.
// Run: KEAPLINK_URL=... KEAPLINK_PARTNER_ID=... KEAPLINK_SESSION_SECRET=... KEAPLINK_API_KEY=... \
//      node keaplink.mjs <your user id>
import { SignJWT } from "jose";
import { createHmac, timingSafeEqual } from "node:crypto";
import { createKeaplink, KeaplinkError } from "../../clients/typescript/keaplink.mjs";

export { KeaplinkError };

const { KEAPLINK_URL, KEAPLINK_PARTNER_ID, KEAPLINK_SESSION_SECRET, KEAPLINK_API_KEY } = process.env;

/** The environment variables this example reads, and what each holds. */
export const SETTINGS = {
  KEAPLINK_URL: "keaplink's origin (PUBLIC_URL), e.g. http://127.0.0.1:8787",
  KEAPLINK_PARTNER_ID: "your partner id, e.g. demo",
  KEAPLINK_SESSION_SECRET: "your partner's session_secret (shown once, when the partner was registered or its secrets rotated)",
  KEAPLINK_API_KEY: "your partner's api_key, klk.<partner>.<random> (shown once, as the session secret)",
};

/** The names of `names` that the environment leaves unset or empty. */
export const missingSettings = (names = Object.keys(SETTINGS), env = process.env) => names.filter((n) => !env[n]);

/** Throws, naming each variable of `names` that is not set (before a call keaplink would refuse). */
function need(...names) {
  const missing = missingSettings(names);
  if (missing.length) throw new Error(`set ${missing.map((n) => `${n} (${SETTINGS[n]})`).join(" and ")}`);
}

/** The generated client, with the partner's API key (made on first use). */
let client;
const keaplink = () => {
  need("KEAPLINK_URL", "KEAPLINK_API_KEY");
  return (client ??= createKeaplink({ baseUrl: KEAPLINK_URL, credential: KEAPLINK_API_KEY }));
};

/** 1. The widget's session: HS256, at most an hour, audience "keaplink". */
export async function sessionJwt(userId, { ttlSecs = 600 } = {}) {
  need("KEAPLINK_PARTNER_ID", "KEAPLINK_SESSION_SECRET");
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(KEAPLINK_PARTNER_ID)
    .setSubject(userId)
    .setAudience("keaplink")
    .setIssuedAt(now)
    .setExpirationTime(now + ttlSecs)
    .sign(new TextEncoder().encode(KEAPLINK_SESSION_SECRET));
}

/**
 * 2. Calls Keap's REST API as `userId` (`path` like "/crm/rest/v2/contacts?page_size=10") and
 * answers Keap's own `{ status, body, headers }`, whatever its status. Throws KeaplinkError when
 * keaplink answered itself: needs_reauth (409: ask the user to reconnect), keap_quota and
 * rate_limited (429: wait `retryAfter` seconds), no_connection (404), ambiguous_connection (409:
 * name `keapApp`), invalid_keap_path (400), keap_error / keap_timeout (502 / 504).
 * (Through `fetch`: the generated client percent-encodes a path parameter, and Keap's path spans
 * segments.)
 */
export async function callKeap(userId, method, path, { body, keapApp } = {}) {
  need("KEAPLINK_URL", "KEAPLINK_API_KEY");
  const headers = {
    authorization: `Bearer ${KEAPLINK_API_KEY}`,
    // Header values travel as bytes: a user id outside Latin-1 goes as its UTF-8 bytes.
    "keaplink-user": Buffer.from(userId, "utf8").toString("latin1"),
  };
  if (keapApp) headers["keaplink-app"] = keapApp;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${KEAPLINK_URL}/v1/keap${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const parsed = text && /json/.test(res.headers.get("content-type") ?? "") ? JSON.parse(text) : text;
  if (res.headers.get("keaplink-error")) throw new KeaplinkError(res.status, parsed, res.headers);
  return { status: res.status, body: parsed, headers: res.headers };
}

/** 3. A Keap access token for `userId`, valid for at least 60 s. Throws KeaplinkError with keaplink's code. */
export async function keapAccessToken(userId, keapApp) {
  const { data, error, response } = await keaplink().POST("/v1/token", {
    body: keapApp ? { user: userId, keap_app: keapApp } : { user: userId },
  });
  // needs_reauth (409): ask the user to reconnect in your settings page; rate_limited and
  // keap_throttled (429): wait `retryAfter` seconds.
  if (error) throw new KeaplinkError(response.status, error, response.headers);
  return data; // { access_token, expires_at, keap_app }
}

/**
 * 4. A repair link for a connection (`event.connection.id` of a connection.needs_reauth webhook):
 * a page keaplink hosts where the user signs in to Keap again, as the right Keap user, and the
 * same connection comes back. Single-use; `ttlSecs` up to 30 days. Mail `url` to the user.
 */
export async function repairLink(connectionId, { ttlSecs } = {}) {
  const { data, error, response } = await keaplink().POST("/v1/connections/{id}/repair-link", {
    params: { path: { id: connectionId } },
    ...(ttlSecs ? { body: { ttl_secs: ttlSecs } } : {}),
  });
  if (error) throw new KeaplinkError(response.status, error, response.headers);
  return data; // { url, expires_at }
}

/** 5. Checks `keaplink-signature: t=<unix>,v1=<hex>` over "<t>.<raw body>"; rejects replays older than 5 min. */
export function verifyWebhook(rawBody, signatureHeader, { toleranceSecs = 300 } = {}) {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signatureHeader ?? "");
  if (!m) return false;
  need("KEAPLINK_SESSION_SECRET");
  const [, t, v1] = m;
  if (Math.abs(Date.now() / 1000 - Number(t)) > toleranceSecs) return false;
  const key = createHmac("sha256", KEAPLINK_SESSION_SECRET).update("keaplink-webhook-v1").digest();
  const expected = createHmac("sha256", key).update(`${t}.${rawBody}`).digest();
  return timingSafeEqual(expected, Buffer.from(v1, "hex"));
}

/**
 * 6a. The Keap events a link should deliver (`connectionId`: `event.connection.id` of its
 * connection.created webhook, or from GET /v1/connections). keaplink subscribes at Keap with a
 * hook URL of its own and keeps the hooks alive; an empty list removes them all.
 */
export async function subscribeKeapEvents(connectionId, eventKeys, { hydrate = false } = {}) {
  const { data, error, response } = await keaplink().PUT("/v1/connections/{id}/hooks", {
    params: { path: { id: connectionId } },
    body: { event_keys: eventKeys, hydrate },
  });
  if (error) throw new KeaplinkError(response.status, error, response.headers);
  return data; // { hooks: [{ event_key, status: "verified" | "pending" | "inactive" | "failed" }], hydrate }
}

/**
 * 6b. A webhook receiver: answers what to send back (2xx: done; anything else: keaplink retries
 * for a day). A Keap event arrives as `keap.<event_key>` with the link it is about; keep the ids
 * you have handled (here an in-memory Set; use your database) so a retried delivery is handled
 * once. `onKeapEvent(event)` gets `event.keap_event`: `object_keys` (ids), and with `hydrate`,
 * `objects` as Keap's REST API answers them and `unread` ({id, code}: `needs_reauth` when the link
 * needs its user, `not_found`, `keap_quota`, ...).
 */
export async function receiveWebhook(rawBody, headers, { seen, onKeapEvent, onConnectionEvent } = {}) {
  if (!verifyWebhook(rawBody, headers["keaplink-signature"])) return { status: 401 };
  const event = JSON.parse(rawBody);
  if (seen?.has(event.id)) return { status: 200, duplicate: true };
  if (event.type.startsWith("keap.")) await onKeapEvent?.(event);
  else await onConnectionEvent?.(event);
  seen?.add(event.id);
  return { status: 200, event };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const missing = missingSettings();
  if (missing.length) {
    console.error("keaplink example: these environment variables are not set:");
    for (const n of missing) console.error(`  ${n}: ${SETTINGS[n]}`);
    console.error("Against ./scripts/dev, the README's Quick start exports them all.");
    process.exit(1);
  }
  const user = process.argv[2] ?? "user-1";
  const jwt = await sessionJwt(user);
  console.log(`session JWT for ${user}: ${jwt.length} chars (hand it to the widget; never log it)`);
  try {
    const who = await callKeap(user, "GET", "/crm/rest/v2/oauth/connect/userinfo");
    console.log(`through keaplink: Keap answered ${who.status}, tenant ${who.body.tenant_id}, ${who.headers.get("x-keap-product-quota-available")} calls left today`);
    const t = await keapAccessToken(user);
    console.log(`keap_app ${t.keap_app}, access token ${t.access_token.length} chars, expires ${t.expires_at}`);
  } catch (err) {
    if (!(err instanceof KeaplinkError)) throw err;
    console.log(`keaplink said ${err.code}`);
    process.exitCode = 2;
  }
}
