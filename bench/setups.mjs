// The two ways bench/run.mjs runs a Worker, behind one interface ({ url, stop, cpu }): under
// `wrangler dev` (as the e2e tests do), and in workerd driven directly through Miniflare, with
// nothing between wrk and workerd. Also the snapshot of the built files every run loads.
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import workerdModule from "workerd";
import { ADMIN_TOKEN, CLIENT_ID, CLIENT_SECRET, ROOMY_LIMITS, ROOT, TOKEN_KEY, freePort, startSandbox, startWorker } from "../tests/e2e/harness.mjs";
import { cpuMs, descendants, processTable, selfCpuMs } from "./cpu.mjs";

const WORKERD = workerdModule.default ?? workerdModule;

/**
 * Copies what the run loads (the built Worker, the static assets, the bench Workers, the config)
 * into a temp folder with the same layout, so a rebuild of worker/build mid-run cannot change
 * what is measured. wrangler.toml's rate limits are raised there, as the e2e tests raise them: the
 * load would otherwise run into LIMIT_TOKEN_* within a second and measure 429s.
 */
export async function snapshot({ before } = {}) {
  const dir = await mkdtemp(join(tmpdir(), "keaplink-bench-snapshot-"));
  // The front's own build (`scripts/build worker`) is needed only by the rows that measure it.
  const hasFront = existsSync(join(ROOT, "worker", "build-front", "index.js"));
  for (const part of ["worker/build", ...(hasFront ? ["worker/build-front"] : []), "dist/assets", "bench/baseline", "bench/passthrough", "bench/wasm-probe"]) {
    await mkdir(join(dir, part, ".."), { recursive: true });
    await cp(join(ROOT, part), join(dir, part), { recursive: true });
  }
  const front = await readFile(join(ROOT, "wrangler.toml"), "utf8");
  let toml = wholeConfig(front, await readFile(join(ROOT, "wrangler.objects.toml"), "utf8"));
  for (const [name, limit] of Object.entries(ROOMY_LIMITS)) {
    const re = new RegExp(`(name = "${name}"[^\\[]*?simple = \\{ limit = )\\d+`);
    if (!re.test(toml)) throw new Error(`no rate-limit binding ${name} in wrangler.toml`);
    toml = toml.replace(re, `$1${limit}`);
  }
  await writeFile(join(dir, "wrangler.toml"), toml);
  // `--before DIR`: another build of the Worker (an earlier commit's worker/build), measured in
  // the same run under the same config.
  let beforeConfig = null;
  if (before) {
    await cp(before, join(dir, "worker", "build-before"), { recursive: true });
    beforeConfig = join(dir, "wrangler.before.toml");
    await writeFile(beforeConfig, toml.replace(/^main = .*$/m, 'main = "worker/build-before/index.js"'));
  }
  // For the cold starts, the baseline's script under keaplink's config (same bindings, so the
  // same services to set up; its Durable Object classes as stubs), alone and then carrying the
  // Worker's wasm as a module workerd compiles at load and nothing instantiates.
  const classes = Object.values(unstable_getMiniflareWorkerOptions(join(dir, "wrangler.toml")).workerOptions.durableObjects ?? {}).map((d) => d.className);
  const baselineJs = await readFile(join(dir, "bench", "baseline", "worker.js"), "utf8");
  const cold = join(dir, "bench", "cold-baseline");
  await mkdir(cold);
  await cp(join(dir, "worker", "build", "index_bg.wasm"), join(cold, "module.wasm"));
  const coldVariants = {};
  for (const [name, carry] of Object.entries({ bindings: "", compiled: "./module.wasm" })) {
    // A copy, not an import: Miniflare would load an imported .js as CommonJS.
    await writeFile(join(cold, `${name}.js`), [
      // Miniflare hands workerd the modules it finds by following imports: this one carries it.
      ...(carry ? [`import "${carry}";`] : []),
      baselineJs,
      "// Added by bench/setups.mjs: keaplink's Durable Object classes, as stubs.",
      ...classes.map((c) => `export class ${c} { fetch() { return new Response(null, { status: 404 }); } }`),
      "",
    ].join("\n"));
    coldVariants[name] = join(dir, `wrangler.cold-${name}.toml`);
    await writeFile(coldVariants[name], toml.replace(/^main = .*$/m, `main = "bench/cold-baseline/${name}.js"`));
  }
  // The front as deployed, for its cold start: its own wasm and config, less the Durable Object
  // bindings (they name the objects' Worker, which a front-only workerd does not run, and
  // /healthz never calls them).
  const frontCold = hasFront ? join(dir, "wrangler.front.toml") : null;
  if (frontCold) await writeFile(frontCold, tablesOf(front).filter((t) => t.header !== "[[durable_objects.bindings]]").map((t) => t.text).join(""));
  return {
    dir,
    config: join(dir, "wrangler.toml"),
    frontCold,
    beforeConfig,
    coldVariants,
    baseline: join(dir, "bench", "baseline", "wrangler.toml"),
    bareBaseline: join(dir, "bench", "baseline", "wrangler.bare.toml"),
    limitsBaseline: join(dir, "bench", "baseline", "wrangler.limits.toml"),
    floorBaseline: join(dir, "bench", "baseline", "wrangler.floor.toml"),
    queueBaseline: join(dir, "bench", "baseline", "wrangler.queue.toml"),
    passthrough: join(dir, "bench", "passthrough", "wrangler.toml"),
    probe: join(dir, "bench", "wasm-probe", "worker.js"),
    workerBuild: join(dir, "worker", "build"),
    assets: join(dir, "dist", "assets"),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/** A TOML file as its tables, in order: the header line (`""` before the first) and the text. */
function tablesOf(toml) {
  const tables = [{ header: "", text: "" }];
  for (const line of toml.split(/(?<=\n)/)) {
    if (/^\s*\[/.test(line)) tables.push({ header: line.trim(), text: "" });
    tables.at(-1).text += line;
  }
  return tables;
}

/**
 * keaplink as one Worker (`scripts/build whole`: worker/build), for the benchmarks: the front's
 * config (wrangler.toml) with its Durable Object bindings local (no `script_name`), plus the
 * objects' migrations and queue consumer (wrangler.objects.toml). Deployed, keaplink is two
 * Workers (README, "Deploying"); measured in one, a request pays no hop between them.
 */
export function wholeConfig(front, objects) {
  const own = tablesOf(objects).filter((t) => ["[[migrations]]", "[[queues.consumers]]"].includes(t.header));
  if (!own.some((t) => t.header === "[[queues.consumers]]")) throw new Error("wrangler.objects.toml has no queue consumer");
  const text = front.replace(/^main = .*$/m, 'main = "worker/build/index.js"').replace(/^script_name = .*\n/gm, "");
  return `${text.trimEnd()}\n\n${own.map((t) => t.text.trimEnd()).join("\n\n")}\n`;
}

const quote = (s) => `'${s.replaceAll("'", "'\\''")}'`;

/**
 * `wrangler dev` on `config`, through the e2e harness. `cpu()` sums, in ms of CPU time, the
 * wrangler process tree: its Node process (and esbuild) as `host`, its workerd processes (the
 * Worker's and wrangler's proxy) as `workerd`.
 */
async function startWrangler({ config, vars = {}, secrets = {}, port, persistTo }) {
  port ??= await freePort();
  const w = await startWorker({ config, vars, secrets, port, persistTo });
  const root = processTable().find((p) => p.ppid === process.pid && p.cmdline.includes(`--port\0${port}\0`));
  if (!root) throw new Error(`cannot find the wrangler dev process on port ${port}`);
  return {
    ...w,
    cpu: () => {
      const tree = descendants(processTable(), root.pid);
      return { host: cpuMs(tree.filter((p) => p.comm !== "workerd")), workerd: cpuMs(tree.filter((p) => p.comm === "workerd")) };
    },
  };
}

/**
 * The Worker of `config` in workerd, driven by Miniflare in this process: the bindings wrangler
 * would give it (read from the same config by wrangler's own unstable_getMiniflareWorkerOptions:
 * KV, Durable Objects, queues, rate limiters, vars, [assets] in front), no request logging by
 * Miniflare, and workerd's stdout and stderr written straight to a file by the kernel (the
 * workerd binary is started through a two-line wrapper), so no Node process touches a console
 * line. `cpu()`: the workerd process as `workerd`, this Node process (Miniflare's host) as `host`.
 * `extra` is merged into the worker's Miniflare options (the wasm probe's unsafe-eval binding).
 */
async function startDirect({ config, vars = {}, secrets = {}, port = 0, persistTo, modules, extra = {}, inspectorPort }) {
  // Port 0 unless the caller needs to know it beforehand (PUBLIC_URL): workerd then binds a free
  // one itself, with no window for another process to take it.
  const dir = await mkdtemp(join(tmpdir(), "keaplink-direct-"));
  const logFile = join(dir, "workerd.log");
  const wrapper = join(dir, "workerd-to-file.sh");
  await writeFile(wrapper, `#!/bin/sh\nexec ${quote(WORKERD)} "$@" >>${quote(logFile)} 2>&1\n`, { mode: 0o755 });
  let worker;
  if (config) {
    const { workerOptions, main } = unstable_getMiniflareWorkerOptions(config);
    // Module names are paths relative to modulesRoot, which must hold them all: the config's
    // folder does, as wrangler's paths are relative to it.
    worker = { ...workerOptions, modules: true, scriptPath: main, modulesRoot: dirname(config), bindings: { ...workerOptions.bindings, ...vars, ...secrets } };
  } else {
    worker = { compatibilityDate: "2026-04-01", modules, modulesRoot: dirname(modules[0].path), bindings: { ...vars, ...secrets } };
  }
  const before = new Set(processTable().filter((p) => p.comm === "workerd").map((p) => p.pid));
  // Miniflare reads the binary's path when it spawns workerd: only this start sees the wrapper.
  const saved = process.env.MINIFLARE_WORKERD_PATH;
  process.env.MINIFLARE_WORKERD_PATH = wrapper;
  const mf = new Miniflare({
    host: "127.0.0.1",
    port,
    logRequests: false,
    cf: false,
    // bench/profile.mjs: V8's inspector on this port (Miniflare's, loopback), for a CPU profile.
    ...(inspectorPort ? { inspectorPort } : {}),
    ...(persistTo ? { defaultPersistRoot: join(persistTo, "v3") } : {}),
    workers: [{ name: "bench", ...worker, ...extra }],
  });
  let url;
  try {
    url = (await mf.ready).origin;
  } catch (err) {
    const out = await readFile(logFile, "utf8").catch(() => "");
    await mf.dispose().catch(() => {});
    await rm(dir, { recursive: true, force: true });
    throw new Error(`workerd did not start: ${err.message}\n--- workerd output ---\n${out}`);
  } finally {
    if (saved === undefined) delete process.env.MINIFLARE_WORKERD_PATH;
    else process.env.MINIFLARE_WORKERD_PATH = saved;
  }
  const mine = processTable().filter((p) => p.comm === "workerd" && p.ppid === process.pid && !before.has(p.pid));
  if (mine.length !== 1) throw new Error(`expected one new workerd process, found ${mine.length}`);
  const pid = mine[0].pid;
  return {
    url,
    pid,
    logText: () => readFileSync(logFile, "utf8"),
    cpu: () => {
      const proc = processTable().find((p) => p.pid === pid);
      if (!proc) throw new Error(`workerd (pid ${pid}) is gone`);
      return { host: selfCpuMs(), workerd: proc.cpuMs };
    },
    stop: async () => {
      await mf.dispose();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The two setups, by key, in the order the report shows them. */
export const SETUPS = {
  wrangler: { title: "wrangler dev", start: startWrangler },
  direct: { title: "workerd direct", start: startDirect },
};

export const startProbe = (snap) =>
  startDirect({
    modules: [
      { type: "ESModule", path: snap.probe },
      { type: "Data", path: join(snap.dir, "bench", "wasm-probe", "target.wasm"), contents: readFileSync(join(snap.workerBuild, "index_bg.wasm")) },
    ],
    extra: { unsafeEvalBinding: "UNSAFE_EVAL" },
  });

/**
 * The Keap sandbox and keaplink wired to it, like the harness's startStack but on the snapshot's
 * config and in either setup. `restartWorker(config?)` restarts keaplink on the same port and KV.
 */
export async function startStack(setup, snap, options = {}) {
  // The Worker's port is picked before it starts (PUBLIC_URL names it), so another process on
  // this shared machine can take it in between: then start again, on another port.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startStackOnce(setup, snap, options);
    } catch (err) {
      if (attempt === 3 || !/address already in use/i.test(err.message)) throw err;
    }
  }
}

async function startStackOnce(setup, snap, { workerVars = {}, persistTo, config = snap.config, inspectorPort }) {
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const sandbox = await startSandbox({ redirectUri: `${publicUrl}/oauth/callback` });
  const secrets = { KEAP_CLIENT_ID: CLIENT_ID, KEAP_CLIENT_SECRET: CLIENT_SECRET, TOKEN_KEYS: TOKEN_KEY, ADMIN_TOKEN };
  const vars = {
    PUBLIC_URL: publicUrl,
    KEAP_AUTHORIZE_URL: `${sandbox.url}/app/oauth/authorize`,
    KEAP_TOKEN_URL: `${sandbox.url}/token`,
    KEAP_USERINFO_URL: `${sandbox.url}/crm/rest/v1/oauth/connect/userinfo`,
    KEAP_LOGOUT_URL: `${sandbox.url}/logout`,
    KEAP_API_URL: sandbox.url,
    KEAP_TIMEOUT_MS: "2000",
    ...workerVars,
  };
  const launch = () => SETUPS[setup].start({ config, vars, secrets, port, persistTo, inspectorPort });
  let worker;
  try {
    worker = await launch();
  } catch (err) {
    await sandbox.stop();
    throw err;
  }
  const stack = {
    sandbox,
    worker,
    url: worker.url,
    /** Restarts keaplink on the same port and KV; with `other`, on that config instead. */
    restartWorker: async (other) => {
      await stack.worker.stop();
      stack.worker = other ? await SETUPS[setup].start({ config: other, vars, secrets, port, persistTo }) : await launch();
    },
    stop: async () => {
      await stack.worker.stop();
      await sandbox.stop();
    },
  };
  return stack;
}
