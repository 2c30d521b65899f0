// schemathesis against the real Worker and sandbox: starts the stack with the end-to-end
// harness, registers a partner, links one of its users through the sandbox, then runs
// schemathesis (target/schemathesis, installed by scripts/bootstrap) over every operation of the
// document the Worker serves, with a credential for each security scheme. Bounded in examples
// (schemathesis.toml) and in time (SCHEMATHESIS_MAX_TIME seconds, default 150). Every answer is
// also written to the transcript, for the contract check that runs after it.
import { spawn } from "node:child_process";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ADMIN_TOKEN, ROOT, TRANSCRIPT, startStack } from "../e2e/harness.mjs";
import { call, linkUser, mintSession, putPartner } from "../e2e/client.mjs";

const BIN = join(ROOT, "target", "schemathesis", "bin", "schemathesis");
const REPORTS = join(ROOT, "target", "test-logs", "schemathesis");
const maxTime = Number(process.env.SCHEMATHESIS_MAX_TIME ?? 150);
const seed = process.env.SCHEMATHESIS_SEED ?? "1616";

const started = Date.now();
const stack = await startStack();
let code = 1;
try {
  const partner = await putPartner(stack.url, "schemathesis", {
    origins: ["https://st.example"],
    returnUrls: ["https://st.example/settings"],
  });
  const user = "st-user-1";
  // From an allowed origin: the popup page then carries the connection id in its message.
  const { connectionId } = await linkUser(stack, partner, user, "ann@ab123.example", { origin: "https://st.example" });
  if (!connectionId) throw new Error("the link through the sandbox gave no connection id");
  // The longest session the Worker accepts (exp - iat ≤ 3600 s), so it outlives the run.
  const now = Math.floor(Date.now() / 1000);
  // A repair link, so its page is reached (GET only: the hook never spends it).
  const repair = await call(stack.url, "POST", `/v1/connections/${connectionId}/repair-link`, { token: partner.api_key, body: {} });
  const repairToken = repair.status === 200 ? new URL(repair.json.url).pathname.split("/").pop() : "";
  const session = await mintSession(partner, user, { iat: now, exp: now + 3600 });
  await mkdir(REPORTS, { recursive: true });
  await mkdir(TRANSCRIPT, { recursive: true });
  const transcriptFile = join(TRANSCRIPT, `schemathesis-${process.pid}.jsonl`);
  const args = [
    "--config-file", join(ROOT, "tests", "schemathesis", "schemathesis.toml"),
    "run", `${stack.url}/v1/openapi.json`,
    "--url", stack.url,
    "--max-time", String(maxTime),
    "--seed", seed,
    "--report", "junit,ndjson",
    "--report-dir", REPORTS,
  ];
  console.log(`schemathesis ${args.join(" ")}`);
  code = await new Promise((resolve) => {
    const child = spawn(BIN, args, {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit"],
      env: {
        ...process.env,
        KEAPLINK_ADMIN_TOKEN: ADMIN_TOKEN,
        KEAPLINK_API_KEY: partner.api_key,
        KEAPLINK_SESSION_JWT: session,
        KEAPLINK_CONNECTION_ID: connectionId,
        KEAPLINK_USER: user,
        KEAPLINK_PARTNER: partner.partner_id,
        KEAPLINK_ORIGIN: "https://st.example",
        KEAPLINK_REPAIR_TOKEN: repairToken,
        KEAPLINK_TRANSCRIPT_FILE: transcriptFile,
        // Hypothesis keeps its example database out of the work tree.
        HYPOTHESIS_STORAGE_DIRECTORY: join(ROOT, "target", "hypothesis"),
      },
    });
    child.on("exit", (c, signal) => resolve(c ?? (signal ? 1 : 0)));
  });
  let answers = [];
  try { answers = (await readFile(transcriptFile, "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l)); } catch { /* none */ }
  const ops = new Set(answers.map((a) => a.method));
  const byStatus = {};
  for (const a of answers) byStatus[a.status] = (byStatus[a.status] ?? 0) + 1;
  console.log(`schemathesis: ${answers.length} requests (methods ${[...ops].join(", ")}), statuses ${JSON.stringify(byStatus)}, ${((Date.now() - started) / 1000).toFixed(0)} s with the stack's start; exit ${code}`);
  // A run that sent almost nothing proves nothing.
  if (answers.length < 200) {
    console.error(`schemathesis sent only ${answers.length} requests`);
    code = code || 1;
  }
} finally {
  await stack.stop();
}
process.exit(code);
