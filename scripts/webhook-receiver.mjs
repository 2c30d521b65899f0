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

/** What a browser (or curl) opening the printed URL reads. */
const WHAT_IT_IS = "This is keaplink's demo webhook receiver (./scripts/dev): keaplink POSTs the demo partner's " +
  "events here, signed, and each is printed in the ./scripts/dev terminal with its signature checked. " +
  "There is nothing to see in a browser; the README's Webhooks section says what the events hold.\n";

createServer(async (req, res) => {
  if (req.method === "GET" || req.method === "HEAD") {
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
    res.end(req.method === "GET" ? WHAT_IT_IS : undefined);
    return;
  }
  if (req.method !== "POST") {
    res.writeHead(405, { allow: "GET, HEAD, POST", "content-type": "text/plain; charset=utf-8" }).end("POST events here.\n");
    return;
  }
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
