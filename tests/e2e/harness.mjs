// Starts the real stack on loopback: the Keap sandbox and the Worker under `wrangler dev`
// (workerd, local KV in a fresh temp folder). Every test file owns its own instances.
import { spawn } from "node:child_process";
import { mkdtemp, rm, mkdir, writeFile, readFile } from "node:fs/promises";
import { appendFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { writeObjectsConfig } from "../../scripts/objects-config.mjs";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const ARTIFACTS = join(ROOT, "tests", "artifacts");
export const SANDBOX_BIN = join(ROOT, "target", "debug", "keaplink-sandbox");

/**
 * What every test process saw, for the secrets check that runs last (tests/checks/secrets.test.mjs): the
 * Worker's answers and logs, and every secret and token in play. JSON lines, one file per process.
 */
export const TRANSCRIPT = join(ROOT, "target", "test-logs", "transcript");
const workerUrls = new Set();
export function record(kind, data) {
  mkdirSync(TRANSCRIPT, { recursive: true });
  appendFileSync(join(TRANSCRIPT, `${process.pid}.jsonl`), JSON.stringify({ kind, ...data }) + "\n");
}
export const isWorkerUrl = (base) => workerUrls.has(new URL(base).origin);

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(url, deadlineMs, exited) {
  const until = Date.now() + deadlineMs;
  let lastErr;
  while (Date.now() < until) {
    if (exited()) throw new Error(`the process exited before answering ${url}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
      lastErr = new Error(`status ${res.status}`);
    } catch (err) {
      lastErr = err;
    }
    await sleep(250);
  }
  throw new Error(`${url} did not answer within ${deadlineMs} ms: ${lastErr}`);
}

/** Spawns `cmd` in its own process group; collects its output; `stop()` ends the group. */
function launch(cmd, args, options = {}) {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], detached: true, ...options });
  const logs = [];
  child.stdout.on("data", (d) => logs.push(d.toString()));
  child.stderr.on("data", (d) => logs.push(d.toString()));
  let exited = false;
  const exit = new Promise((resolve) => child.once("exit", () => { exited = true; resolve(); }));
  const stop = async () => {
    if (exited) return;
    try { process.kill(-child.pid, "SIGTERM"); } catch { /* gone */ }
    await Promise.race([exit, sleep(5000)]);
    if (!exited) try { process.kill(-child.pid, "SIGKILL"); } catch { /* gone */ }
  };
  return { child, logs, stop, exited: () => exited };
}

export const CLIENT_ID = "keaplink-test-client";
export const CLIENT_SECRET = `cs-${randomBytes(12).toString("hex")}`;

/** The Keap sandbox on a free port. */
export async function startSandbox({ redirectUri, expiresIn = 86400 } = {}) {
  const args = ["--port", "0", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--expires-in", String(expiresIn)];
  if (redirectUri) args.push("--redirect-uri", redirectUri);
  const proc = launch(SANDBOX_BIN, args);
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    const m = proc.logs.join("").match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    if (m) {
      const url = m[1];
      const call = async (path, body) => {
        const res = await fetch(`${url}/__sandbox/${path}`, body === undefined ? {} : {
          method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
        });
        return res.status === 204 ? null : res.json();
      };
      const stop = async () => {
        try { record("issued", await call("issued")); } catch { /* already gone */ }
        await proc.stop();
      };
      return {
        url,
        logs: proc.logs,
        stop,
        stats: () => call("stats"),
        fault: (kind, count = 1, hang_ms) => call("faults", { kind, count, ...(hang_ms ? { hang_ms } : {}) }),
        configure: (cfg) => call("config", cfg),
        revoke: (email) => call("revoke", { email }),
        seed: (email, count) => call("seed", { email, count }),
        reset: () => call("reset", {}),
        // The newer controls answer {"error"} for bad input: thrown, so a typo fails the test.
        // cfg: {product_quota?, product_throttle?: {limit?, window_ms?, used?}, tenant_throttle?: {limit?, window_ms?, used?: {app: n}}}
        quota: async (cfg) => { const r = await call("quota", cfg); if (r?.error) throw new Error(`sandbox quota: ${r.error}`); return r; },
        revokeAccess: async (email) => { const r = await call("revoke-access", email === undefined ? {} : { email }); if (r?.error) throw new Error(`sandbox revoke-access: ${r.error}`); return r; },
        apiFaults: async (kind, count = 1, hangMs) => { const r = await call("api-faults", { kind, count, ...(hangMs ? { hang_ms: hangMs } : {}) }); if (r?.error) throw new Error(`sandbox api-faults: ${r.error}`); return r; },
        apiGate: async (count, timeoutMs) => { const r = await call("api-gate", { count, ...(timeoutMs ? { timeout_ms: timeoutMs } : {}) }); if (r?.error) throw new Error(`sandbox api-gate: ${r.error}`); return r; },
        apiLog: async () => (await call("api-log")).requests,
        // {rate, hang_ms?, seed?}: that share of all token and REST calls fails (429, 500, hang, lost answer).
        chaos: async (cfg) => { const r = await call("chaos", cfg); if (r?.error) throw new Error(`sandbox chaos: ${r.error}`); return r; },
      };
    }
    if (proc.exited()) break;
    await sleep(50);
  }
  await proc.stop();
  throw new Error(`the sandbox did not start:\n${proc.logs.join("")}`);
}

/**
 * Starts `wrangler dev`. `vars` become `--var`s; `secrets` go through an env file so wrangler
 * never prints them. Returns `{ url, logs, stop }`.
 */
/** Limits the tests run under unless they ask for others: high enough never to get in the way. */
export const ROOMY_LIMITS = {
  LIMIT_FLOW_IP: 100_000,
  LIMIT_FLOW_PARTNER: 100_000,
  LIMIT_TOKEN_IP: 1_000_000,
  LIMIT_TOKEN_PARTNER: 1_000_000,
  LIMIT_PROXY_IP: 1_000_000,
  LIMIT_PROXY_PARTNER: 1_000_000,
};

/**
 * wrangler.toml with the rate-limit bindings' counts replaced (periods kept), written beside it
 * (its paths are relative to it). Rate-limit bindings take their limits from config only.
 */
async function configWithLimits(limits) {
  let toml = await readFile(join(ROOT, "wrangler.toml"), "utf8");
  for (const [name, limit] of Object.entries(limits)) {
    const re = new RegExp(`(name = "${name}"[^\\[]*?simple = \\{ limit = )\\d+`);
    if (!re.test(toml)) throw new Error(`no rate-limit binding ${name} in wrangler.toml`);
    toml = toml.replace(re, `$1${limit}`);
  }
  const path = join(ROOT, `.wrangler-test-${process.pid}-${randomBytes(4).toString("hex")}.toml`);
  await writeFile(path, toml);
  return path;
}

/**
 * The objects' Worker (wrangler.objects.toml) for one run, in a folder of its own: its [vars] are
 * the front's as this run sets them, and its secrets sit in a `.dev.vars` beside it (wrangler dev
 * reads `--var` and `--env-file` for the first Worker only).
 */
async function objectsConfig(vars, secrets) {
  const dir = await mkdtemp(join(tmpdir(), "keaplink-objects-"));
  return { path: await writeObjectsConfig({ dir, vars, secrets }), dir };
}

export async function startWorker(options = {}) {
  // wrangler dev binds ports of its own besides ours (more with two Workers): on a machine other
  // processes share, one can be taken between its choice and its bind. Such a start is tried
  // again (up to three times); any other failure is the test's.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startWorkerOnce(options);
    } catch (err) {
      if (attempt === 3 || !/Address already in use/.test(err.message)) throw err;
      console.error(`wrangler dev found a port taken (attempt ${attempt}); starting again`);
    }
  }
}

async function startWorkerOnce({ vars = {}, secrets = {}, port, persistTo, limits = {}, config: fixedConfig } = {}) {
  port ??= await freePort();
  // A caller's own config (the benchmark baseline) is used as it is, alone.
  const config = fixedConfig ?? (await configWithLimits({ ...ROOMY_LIMITS, ...limits }));
  const objects = fixedConfig ? null : await objectsConfig(vars, secrets);
  const inspectorPort = await freePort();
  // A caller-owned folder survives stop(): a restart on it sees the same KV.
  const persist = persistTo ?? (await mkdtemp(join(tmpdir(), "keaplink-kv-")));
  const envFile = join(await mkdtemp(join(tmpdir(), "keaplink-env-")), "secrets.env");
  await writeFile(envFile, Object.entries(secrets).map(([k, v]) => `${k}=${v}\n`).join(""), { mode: 0o600 });
  const args = [
    "dev",
    "--config", config,
    ...(objects ? ["--config", objects.path] : []),
    "--ip", "127.0.0.1",
    "--port", String(port),
    "--inspector-port", String(inspectorPort),
    "--test-scheduled",
    "--persist-to", persist,
    "--env-file", envFile,
    "--show-interactive-dev-session=false",
  ];
  for (const [name, value] of Object.entries(vars)) args.push("--var", `${name}:${value}`);
  const proc = launch(join(ROOT, "node_modules", ".bin", "wrangler"), args, {
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
  });
  const url = `http://127.0.0.1:${port}`;
  workerUrls.add(url);
  const { KEAP_CLIENT_ID: _, ...secretValues } = secrets;
  record("secrets", { values: Object.values(secretValues).flatMap((v) => String(v).split(",")) });
  const stop = async () => {
    await proc.stop();
    record("worker-log", { text: proc.logs.join("") });
    await rm(dirname(envFile), { recursive: true, force: true });
    if (objects) await rm(objects.dir, { recursive: true, force: true });
    if (!fixedConfig) await rm(config, { force: true });
    if (!persistTo) await rm(persist, { recursive: true, force: true });
  };
  try {
    await waitFor(`${url}/healthz`, 60_000, proc.exited);
  } catch (err) {
    await stop();
    throw new Error(`${err.message}\n--- wrangler output ---\n${proc.logs.join("")}`);
  }
  return { url, logs: proc.logs, stop, persist };
}

export const ADMIN_TOKEN = `adm-${randomBytes(16).toString("hex")}`;
export const TOKEN_KEY = randomBytes(32).toString("base64");

/**
 * The sandbox and the Worker wired to it. `workerVars` override the defaults (an object, or a
 * function of the sandbox's URL that returns one).
 */
export async function startStack({ workerVars = {}, sandbox: sandboxOpts = {}, secrets = {}, persistTo, limits } = {}) {
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const sandbox = await startSandbox({ redirectUri: `${publicUrl}/oauth/callback`, ...sandboxOpts });
  const allSecrets = {
    KEAP_CLIENT_ID: CLIENT_ID,
    KEAP_CLIENT_SECRET: CLIENT_SECRET,
    TOKEN_KEYS: TOKEN_KEY,
    ADMIN_TOKEN,
    ...secrets,
  };
  const vars = {
    PUBLIC_URL: publicUrl,
    KEAP_AUTHORIZE_URL: `${sandbox.url}/app/oauth/authorize`,
    KEAP_TOKEN_URL: `${sandbox.url}/token`,
    KEAP_USERINFO_URL: `${sandbox.url}/crm/rest/v2/oauth/connect/userinfo`,
    KEAP_API_URL: sandbox.url,
    KEAP_LOGOUT_URL: `${sandbox.url}/logout`,
    KEAP_TIMEOUT_MS: "2000",
    // A function of the sandbox's URL, for vars that name its pages (as scripts/dev's do).
    ...(typeof workerVars === "function" ? workerVars(sandbox.url) : workerVars),
  };
  const launchWorker = () => startWorker({ port, persistTo, secrets: allSecrets, vars, limits });
  let worker;
  try {
    worker = await launchWorker();
  } catch (err) {
    await sandbox.stop();
    throw err;
  }
  const stack = {
    sandbox,
    worker,
    url: worker.url,
    secrets: allSecrets,
    /** Restarts the Worker on the same port and KV, with the secrets changed as given. */
    restartWorker: async (changedSecrets = {}) => {
      if (!persistTo) throw new Error("restartWorker needs a persistTo folder");
      await stack.worker.stop();
      Object.assign(allSecrets, changedSecrets);
      stack.worker = await launchWorker();
    },
    stop: async () => { await stack.worker.stop(); await sandbox.stop(); },
  };
  return stack;
}

export async function artifactPath(name) {
  await mkdir(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}
