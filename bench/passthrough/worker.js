// The baseline of bench/run.mjs's proxy rows: the least a Worker can do to relay a request.
// It forwards the request (method, headers, body) to the fixed upstream URL in UPSTREAM_URL and
// returns the answer as it is: no auth, no routing, no header rules, no log line.
export default {
  async fetch(request, env) {
    return fetch(env.UPSTREAM_URL, { method: request.method, headers: request.headers, body: request.body });
  },
};
