// The baseline of bench/run.mjs: the least a Worker can do for a token request on this runtime.
// It reads one KV value and returns it: no auth, no parsing, no crypto.
export default {
  async fetch(_request, env) {
    const value = await env.KV.get("bench");
    return new Response(value, { headers: { "content-type": "application/json" } });
  },
};
