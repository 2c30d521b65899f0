// Deploying for real: `scripts/deploy` refuses wrangler.toml's loopback PUBLIC_URL (and any that is
// not an https origin) before wrangler runs, and passes a good one on to `wrangler deploy`
// (--dry-run here: offline); a Worker that kept the loopback default anyway refuses every request
// that reaches it at another host (core's `deploy` rule); `scripts/bootstrap --deploy` installs
// only what a deploy needs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import net from "node:net";
import { join } from "node:path";
import { ROOT, startWorker, record } from "./harness.mjs";

const DEPLOY = join(ROOT, "scripts", "deploy");
const deploy = (...args) => {
  const out = spawnSync(DEPLOY, args, { encoding: "utf8", timeout: 120_000, env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });
  return { status: out.status, stdout: out.stdout, stderr: out.stderr };
};

test("scripts/deploy refuses the loopback default and any PUBLIC_URL that is not an https origin, before wrangler runs", () => {
  const cases = [
    [[], /PUBLIC_URL \(wrangler\.toml\) is this machine \(a loopback address: the local default\)/],
    [["--var", "PUBLIC_URL:http://localhost:8787"], /PUBLIC_URL \(--var\) is this machine/],
    [["--var=PUBLIC_URL:https://[::1]"], /is this machine/],
    [["--var", "PUBLIC_URL:http://keaplink.acme.example"], /is not https/],
    [["--var", "PUBLIC_URL:https://keaplink.acme.example/keaplink"], /is not an origin/],
    [["--var", "PUBLIC_URL:keaplink.acme.example"], /is not a URL/],
  ];
  for (const [args, why] of cases) {
    const out = deploy("--dry-run", ...args);
    assert.equal(out.status, 1, `${args}: ${out.stdout}${out.stderr}`);
    assert.match(out.stderr, /^scripts\/deploy: refusing to deploy: /);
    assert.match(out.stderr, why, `${args}`);
    assert.match(out.stderr, /Deploy section/);
    assert.doesNotMatch(`${out.stdout}${out.stderr}`, /Total Upload|dry-run: exiting/, "wrangler did not run");
  }
});

test("scripts/deploy passes a public https origin on to wrangler deploy", () => {
  const out = deploy("--dry-run", "--outdir", join(ROOT, "target", "deploy-dry-run-public"), "--var", "PUBLIC_URL:https://keaplink.acme.example");
  assert.equal(out.status, 0, `${out.stdout}${out.stderr}`);
  assert.match(out.stdout, /PUBLIC_URL \(--var\) is https:\/\/keaplink\.acme\.example; Keap's redirect URI: https:\/\/keaplink\.acme\.example\/oauth\/callback/);
  assert.match(`${out.stdout}${out.stderr}`, /--dry-run: exiting now/);
});

let worker;
before(async () => {
  // wrangler.toml's PUBLIC_URL, the loopback default, as a plain `wrangler deploy` would keep it.
  worker = await startWorker({ secrets: { KEAP_CLIENT_ID: "c", KEAP_CLIENT_SECRET: "s", TOKEN_KEYS: Buffer.alloc(32, 7).toString("base64"), ADMIN_TOKEN: "deploy-test-admin-token" } });
});
after(async () => { await worker?.stop(); });

/** GET `path` on a raw socket with `host` as the Host header (fetch would not let us set it). */
function getWithHost(path, host) {
  const { hostname, port } = new URL(worker.url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname, () => s.write(`GET ${path} HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`));
    let buf = "";
    s.on("data", (c) => { buf += c.toString("latin1"); });
    s.on("end", () => {
      const [head, ...rest] = buf.split("\r\n\r\n");
      const [statusLine, ...hs] = head.split("\r\n");
      const headers = Object.fromEntries(hs.map((h) => [h.slice(0, h.indexOf(":")).toLowerCase(), h.slice(h.indexOf(":") + 1).trim()]));
      let text = rest.join("\r\n\r\n");
      if (/chunked/i.test(headers["transfer-encoding"] ?? "")) text = text.replace(/^[0-9a-f]+\r\n/i, "").replace(/\r\n0\r\n\r\n$/, "").replace(/\r\n[0-9a-f]+\r\n/gi, "");
      const status = Number(statusLine.split(" ")[1]);
      record("answer", { method: "GET", path, status, headers, text });
      resolve({ status, headers, text });
    });
    s.on("error", reject);
    s.setTimeout(20_000, () => s.destroy(new Error("no answer")));
  });
}

test("a Worker with the loopback PUBLIC_URL serves loopback requests only: any other host is 500 misconfigured, /healthz included", async () => {
  const { port } = new URL(worker.url);
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) {
    const ok = await getWithHost("/healthz", host);
    assert.equal(ok.status, 200, `${host}: ${ok.text}`);
  }
  for (const path of ["/healthz", "/v1/me/connections", "/oauth/callback"]) {
    const res = await getWithHost(path, "keaplink.acme.example");
    assert.equal(res.status, 500, `${path}: ${res.status} ${res.text}`);
    const body = JSON.parse(res.text);
    assert.equal(body.error.code, "misconfigured");
    assert.match(body.error.message, /PUBLIC_URL is a loopback address .* set PUBLIC_URL to the Worker's public origin/);
    assert.doesNotMatch(body.error.message, /127\.0\.0\.1|keaplink\.acme\.example/, "names the setting, not values");
    assert.ok(res.headers["x-request-id"]);
  }
});

test("scripts/bootstrap --deploy installs only what a deploy needs; an unknown option is refused", () => {
  const out = spawnSync(join(ROOT, "scripts", "bootstrap"), ["--deploy"], { encoding: "utf8", timeout: 300_000 });
  assert.equal(out.status, 0, `${out.stdout}${out.stderr}`);
  const phases = [...out.stdout.matchAll(/^==> (.+)$/gm)].map((m) => m[1]);
  assert.deepEqual(phases, [
    "bootstrap: prerequisites", "bootstrap: wasm target", "bootstrap: node packages",
    "bootstrap: worker-build", "bootstrap: wasm-bindgen CLI",
  ]);
  assert.match(out.stdout, /Ready to deploy/);
  const bad = spawnSync(join(ROOT, "scripts", "bootstrap"), ["--deplyo"], { encoding: "utf8" });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown option --deplyo/);
});
