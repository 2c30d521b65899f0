// The baseline of bench/run.mjs: the least a Worker can do for a token request on this runtime.
// It reads one KV value and returns it: no auth, no parsing, no crypto.
// With RATE_LIMITS = "1" (wrangler.limits.toml) it first asks two rate limits as keaplink's
// token path does: the address's, then the partner's while the value is read. With SEND_TO_QUEUE = "1"
// (wrangler.queue.toml) it reads the body while the value is read, then sends the body to a
// queue before answering 200 (the floor of a receiver that must not lose what it accepted).
// With FLOOR = "1" (wrangler.floor.toml) it does, in JS, the runtime work keaplink's token path
// cannot skip: the key and address headers; the address's rate limit while the body is read and
// the key hashed (SHA-256) and compared with the stored hash; the body's JSON and its user and app
// checked; the connection's KV key derived and read while the partner's limit is asked; the
// record's JSON; its sealed token decoded (base64) and unsealed (WebCrypto AES-GCM, the key
// imported once per isolate); a JSON answer with keaplink's headers; a log line after it. The
// floor a Worker written in JS would stand on, not a goal.
// The one API key the floor takes (bench/run.mjs sends it), and its record's key: c/bench/<user>/<app>.
const FLOOR_KEY = "klk.bench";
let sealed = null;
async function seal() {
  const key = await crypto.subtle.importKey("raw", new Uint8Array(32), "AES-GCM", false, ["encrypt", "decrypt"]);
  const iv = new Uint8Array(12);
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, new TextEncoder().encode('{"access_token":"bench-access-token-0123456789","refresh_token":"bench-refresh-token-0123456789"}'));
  const keyHash = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(FLOOR_KEY)));
  return { key, iv, b64: btoa(String.fromCharCode(...new Uint8Array(ct))), keyHash };
}
const json = (status, value, headers = {}) => new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json", "cache-control": "no-store", ...headers } });
let counter = 0;
async function floor(request, env, ctx) {
  const started = Date.now();
  const auth = request.headers.get("authorization") ?? "";
  const ip = request.headers.get("cf-connecting-ip") ?? "local";
  sealed ??= await seal();
  const apiKey = auth.startsWith("Bearer ") ? auth.slice(7).trim() : "";
  const [byIp, body, digest] = await Promise.all([
    env.LIMIT_IP.limit({ key: `ip:${ip}` }),
    request.text(),
    crypto.subtle.digest("SHA-256", new TextEncoder().encode(apiKey)),
  ]);
  if (!byIp.success) return json(429, { error: { code: "rate_limited" } });
  const hash = new Uint8Array(digest);
  let diff = hash.length ^ sealed.keyHash.length;
  for (let i = 0; i < hash.length; i++) diff |= hash[i] ^ sealed.keyHash[i];
  if (diff !== 0) return json(401, { error: { code: "invalid_api_key" } });
  const asked = JSON.parse(body);
  if (typeof asked.user !== "string" || !/^[^\u0000-\u001f]{1,256}$/.test(asked.user) || !/^[a-z0-9-]{1,64}$/.test(asked.keap_app ?? "")) return json(400, { error: { code: "invalid_request" } });
  const recordKey = `c/bench/${asked.user}/${asked.keap_app}`;
  const [byPartner, value] = await Promise.all([env.LIMIT_PARTNER.limit({ key: "partner:bench" }), env.KV.get(recordKey)]);
  if (!byPartner.success) return json(429, { error: { code: "rate_limited" } });
  if (value === null) return json(404, { error: { code: "no_connection" } });
  const record = JSON.parse(value);
  const ct = Uint8Array.from(atob(sealed.b64), (c) => c.charCodeAt(0));
  const tokens = JSON.parse(new TextDecoder().decode(await crypto.subtle.decrypt({ name: "AES-GCM", iv: sealed.iv }, sealed.key, ct)));
  const id = `bench-${++counter}`;
  const status = 200;
  ctx.waitUntil(Promise.resolve().then(() => console.log(JSON.stringify({ event: "request", id, method: request.method, path: new URL(request.url).pathname, status, ms: Date.now() - started }))));
  return json(status, { access_token: tokens.access_token, expires_at: record.expires_at ?? "", keap_app: asked.keap_app }, { "x-request-id": id });
}
export default {
  async fetch(request, env, ctx) {
    if (env.FLOOR === "1") return floor(request, env, ctx);
    if (env.SEND_TO_QUEUE === "1") {
      const [value, body] = await Promise.all([env.KV.get("bench"), request.text()]);
      if (value === null) return new Response("not seeded", { status: 500 });
      await env.QUEUE.send(body, { contentType: "text" });
      return new Response(null, { status: 200 });
    }
    if (env.RATE_LIMITS === "1") {
      const byIp = await env.LIMIT_IP.limit({ key: "ip:bench" });
      const [byPartner, value] = await Promise.all([env.LIMIT_PARTNER.limit({ key: "partner:bench" }), env.KV.get("bench")]);
      if (!byIp.success || !byPartner.success) return new Response("rate limited", { status: 429 });
      return new Response(value, { headers: { "content-type": "application/json" } });
    }
    const value = await env.KV.get("bench");
    return new Response(value, { headers: { "content-type": "application/json" } });
  },
};
