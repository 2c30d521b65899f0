// The baseline of bench/run.mjs: the least a Worker can do for a token request on this runtime.
// It reads one KV value and returns it: no auth, no parsing, no crypto.
// With RATE_LIMITS = "1" (wrangler.limits.toml) it first asks two rate limits as keaplink's
// token path does: the address's, then the partner's while the value is read. With SEND_TO_QUEUE = "1"
// (wrangler.queue.toml) it reads the body while the value is read, then sends the body to a
// queue before answering 200 (the floor of a receiver that must not lose what it accepted).
export default {
  async fetch(request, env) {
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
