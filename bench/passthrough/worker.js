// The baselines of bench/run.mjs's proxy rows: the least a Worker can do to relay a request.
// It forwards the request (method, headers, body) to the fixed upstream URL in UPSTREAM_URL and
// returns the answer as it is: no auth, no routing, no header rules, no log line.
// With TOKEN_FROM_KV = "1" it first reads a record from KV (key "bench") and sends its
// access_token as the bearer: the least any proxy that keeps its tokens in KV must do.
export default {
  async fetch(request, env) {
    if (env.TOKEN_FROM_KV !== "1") {
      return fetch(env.UPSTREAM_URL, { method: request.method, headers: request.headers, body: request.body });
    }
    const record = JSON.parse(await env.KV.get("bench"));
    const headers = new Headers(request.headers);
    headers.set("authorization", `Bearer ${record.access_token}`);
    return fetch(env.UPSTREAM_URL, { method: request.method, headers, body: request.body });
  },
};
