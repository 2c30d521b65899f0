// A partner's webhook endpoint, for local runs: receives keaplink's events on 127.0.0.1, checks
// each signature as a partner's back-end would (examples/partner-node), and prints one line per
// event. ./scripts/dev starts it and registers it as the demo partner's webhook_url.
// Usage: node scripts/webhook-receiver.mjs [port]   (default 8789; the secret is read from
// .wrangler/demo-partner.json at each event, so a rotation is picked up)
import { createServer } from "node:http";
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

/** keaplink-signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">, keyed as the README says. */
function verifyWebhook(body, header, secret) {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? "");
  if (!m || Math.abs(Date.now() / 1000 - Number(m[1])) > 300) return false;
  const key = createHmac("sha256", secret).update("keaplink-webhook-v1").digest();
  return timingSafeEqual(createHmac("sha256", key).update(`${m[1]}.${body}`).digest(), Buffer.from(m[2], "hex"));
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const port = Number(process.argv[2] ?? 8789);

createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks).toString("utf8");
  let secret;
  try { secret = JSON.parse(await readFile(join(root, ".wrangler", "demo-partner.json"), "utf8")).session_secret; } catch { /* not yet */ }
  const ok = secret && verifyWebhook(body, req.headers["keaplink-signature"], secret);
  let line = "(unreadable)";
  try {
    const e = JSON.parse(body);
    const c = e.connection ?? {};
    line = `${e.type} for partner user ${e.user}: ${c.keap_user?.email ?? "?"} in ${c.keap_app ?? "?"} (${c.status ?? "?"})${e.repair_url ? ", with a repair link" : ""}`;
  } catch { /* not JSON */ }
  console.log(`  webhook: ${line} [${ok ? "signature verified" : "SIGNATURE NOT VERIFIED"}] ${req.headers["keaplink-event-id"] ?? ""}`);
  res.writeHead(ok ? 204 : 400).end();
}).listen(port, "127.0.0.1", () => console.log(`  Webhook receiver:  http://127.0.0.1:${port}/hooks (prints each event below)`));
