// The baseline of bench/run.mjs: the least a Worker can do for a token request on this runtime.
// It reads one KV value and returns it: no auth, no parsing, no crypto.
// With RATE_LIMITS = "1" (wrangler.limits.toml) it first asks two rate limits as keaplink's
// token path does: the address's, then the partner's while the value is read. With SEND_TO_QUEUE = "1"
// (wrangler.queue.toml) it reads the body while the value is read, then sends the body to a
// queue before answering 200 (the floor of a receiver that must not lose what it accepted).
// With FLOOR = "1" (wrangler.floor.toml) it does, in JS, the runtime work keaplink's token path
// cannot skip: the key and address headers, the address's rate limit while the body is read, the
// partner's while the value is read, the body's JSON, the record's JSON, unsealing a token
// (WebCrypto AES-GCM, the key imported once per isolate), a JSON answer with keaplink's headers and
// a log line after it. The floor a Worker written in JS would stand on, not a goal.
let sealed = null;
async function seal() {
  const key = await crypto.subtle.importKey("raw", new Uint8Array(32), "AES-GCM", false, ["encrypt", "decrypt"]);
  const iv = new Uint8Array(12);
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, new TextEncoder().encode('{"access_token":"bench-access-token-0123456789","refresh_token":"bench-refresh-token-0123456789"}'));
  return { key, iv, ct };
}
let counter = 0;
async function floor(request, env, ctx) {
  const started = Date.now();
  const auth = request.headers.get("authorization") ?? "";
  const ip = request.headers.get("cf-connecting-ip") ?? "local";
  sealed ??= await seal();
  const [byIp, body] = await Promise.all([env.LIMIT_IP.limit({ key: `ip:${ip}` }), request.text()]);
  const asked = JSON.parse(body);
  const [byPartner, value] = await Promise.all([env.LIMIT_PARTNER.limit({ key: `partner:${auth.length}` }), env.KV.get("bench")]);
  if (!byIp.success || !byPartner.success) return new Response("rate limited", { status: 429 });
  const record = JSON.parse(value);
  const tokens = JSON.parse(new TextDecoder().decode(await crypto.subtle.decrypt({ name: "AES-GCM", iv: sealed.iv }, sealed.key, sealed.ct)));
  const id = `bench-${++counter}`;
  const answer = JSON.stringify({ access_token: tokens.access_token, expires_at: record.expires_at ?? "", keap_app: asked.keap_app });
  const status = 200;
  ctx.waitUntil(Promise.resolve().then(() => console.log(JSON.stringify({ event: "request", id, method: request.method, path: new URL(request.url).pathname, status, ms: Date.now() - started }))));
  return new Response(answer, { status, headers: { "content-type": "application/json", "cache-control": "no-store", "x-request-id": id } });
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
