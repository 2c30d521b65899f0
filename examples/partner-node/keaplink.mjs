// A partner back-end's three touch points with keaplink, in Node (>= 18) with `jose`:
//   1. mint the session JWT the widget presents for the signed-in user (serve it from your
//      own authenticated endpoint and point the widget's `session-url` at it);
//   2. get a fresh Keap access token for one of your users (from a cron, a queue, a Lambda);
//   3. verify a webhook keaplink sent you.
// Run: KEAPLINK_URL=... KEAPLINK_PARTNER_ID=... KEAPLINK_SESSION_SECRET=... KEAPLINK_API_KEY=... \
//      node keaplink.mjs <your user id>
import { SignJWT } from "jose";
import { createHmac, timingSafeEqual } from "node:crypto";

const { KEAPLINK_URL, KEAPLINK_PARTNER_ID, KEAPLINK_SESSION_SECRET, KEAPLINK_API_KEY } = process.env;

/** 1. The widget's session: HS256, at most an hour, audience "keaplink". */
export async function sessionJwt(userId, { ttlSecs = 600 } = {}) {
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

/** 2. A Keap access token for `userId`, valid for at least 60 s. Throws with keaplink's error code. */
export async function keapAccessToken(userId, keapApp) {
  const res = await fetch(`${KEAPLINK_URL}/v1/token`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEAPLINK_API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify(keapApp ? { user: userId, keap_app: keapApp } : { user: userId }),
  });
  const body = await res.json();
  if (!res.ok) {
    // needs_reauth (409): ask the user to reconnect in your settings page; rate_limited and
    // keap_throttled (429): wait `retry-after` seconds.
    const err = new Error(`${body.error.code}: ${body.error.message}`);
    err.code = body.error.code;
    err.retryAfter = Number(res.headers.get("retry-after")) || undefined;
    throw err;
  }
  return body; // { access_token, expires_at, keap_app }
}

/** 3. Checks `keaplink-signature: t=<unix>,v1=<hex>` over "<t>.<raw body>"; rejects replays older than 5 min. */
export function verifyWebhook(rawBody, signatureHeader, { toleranceSecs = 300 } = {}) {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signatureHeader ?? "");
  if (!m) return false;
  const [, t, v1] = m;
  if (Math.abs(Date.now() / 1000 - Number(t)) > toleranceSecs) return false;
  const key = createHmac("sha256", KEAPLINK_SESSION_SECRET).update("keaplink-webhook-v1").digest();
  const expected = createHmac("sha256", key).update(`${t}.${rawBody}`).digest();
  return timingSafeEqual(expected, Buffer.from(v1, "hex"));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const user = process.argv[2] ?? "user-1";
  const jwt = await sessionJwt(user);
  console.log(`session JWT for ${user}: ${jwt.length} chars (hand it to the widget; never log it)`);
  try {
    const t = await keapAccessToken(user);
    console.log(`keap_app ${t.keap_app}, access token ${t.access_token.length} chars, expires ${t.expires_at}`);
    // Call Keap with it: fetch("https://api.infusionsoft.com/crm/rest/v1/contacts", { headers: { authorization: `Bearer ${t.access_token}` } })
  } catch (err) {
    console.log(`no token: ${err.code}`);
    process.exitCode = 2;
  }
}
