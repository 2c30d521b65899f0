// Registers the demo partner in a running local Worker (or keeps the one registered before) and
// prints demo page URLs with session JWTs, as a partner's back-end would mint them.
// Usage: ADMIN_TOKEN=... node scripts/demo-partner.mjs <worker-url> [webhook-url] [demo-backend-url]
// With the demo back-end's URL (scripts/demo-backend.mjs, which ./scripts/dev starts) the printed
// links name it and carry no JWT: the page asks it for a fresh one at each load. Without, they
// carry a JWT valid 1 h.
// Its API key and session secret are kept in .wrangler/demo-partner.json (git-ignored) and reused
// while the local state that registered them lives, so yesterday's key keeps working.
import { SignJWT } from "jose";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const saved = join(root, ".wrangler", "demo-partner.json");
const [base, webhookUrl, backendUrl] = process.argv.slice(2);
const admin = process.env.ADMIN_TOKEN;
if (!base || !admin) {
  console.error("usage: ADMIN_TOKEN=... node scripts/demo-partner.mjs <worker-url> [webhook-url] [demo-backend-url]");
  process.exit(2);
}

/** The partner saved by an earlier start, if its API key still works in this Worker. */
async function previous() {
  let p;
  try { p = JSON.parse(await readFile(saved, "utf8")); } catch { return null; }
  if (!p.api_key || !p.session_secret) return null;
  const res = await fetch(`${base}/v1/connections?limit=1`, { headers: { authorization: `Bearer ${p.api_key}` } });
  return res.status === 200 ? p : null;
}

const kept = await previous();
// A PUT replaces the partner's settings: what was set since (in the console's Settings, or with
// PATCH /v1/partner) is sent again, so a restart keeps it; the webhook URL is this dev run's
// receiver, and the origins and return URLs are this run's first, then earlier ones (at most 20).
const known = await fetch(`${base}/v1/admin/partners/demo`, { headers: { authorization: `Bearer ${admin}` } });
const before = known.status === 200 ? await known.json() : {};
const res = await fetch(`${base}/v1/admin/partners/demo`, {
  method: "PUT",
  headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
  body: JSON.stringify({
    name: "Demo partner",
    allowed_origins: [...new Set([new URL(base).origin, ...(before.allowed_origins ?? [])])].slice(0, 20),
    return_urls: [...new Set([`${base}/demo/`, ...(before.return_urls ?? [])])].slice(0, 20),
    ...(before.reconnect_identity ? { reconnect_identity: before.reconnect_identity } : {}),
    ...(before.webhook_repair_links !== undefined ? { webhook_repair_links: before.webhook_repair_links } : {}),
    ...(webhookUrl ?? before.webhook_url ? { webhook_url: webhookUrl ?? before.webhook_url } : {}),
    // Keap for AI agents: the demo back-end plays the partner's sign-in for MCP clients.
    ...(backendUrl ? { mcp: { enabled: true, sign_in_url: `${backendUrl}/keaplink-mcp`, tools: "read_write" } } : {}),
    // New secrets only when the ones saved are gone (a fresh local state, or a first start).
    rotate_secrets: !kept,
  }),
});
if (res.status !== 200) {
  console.error(`could not register the demo partner: ${res.status} ${await res.text()}`);
  process.exit(1);
}
const partner = { ...(await res.json()), ...(kept ? { api_key: kept.api_key, session_secret: kept.session_secret } : {}) };
await mkdir(join(root, ".wrangler"), { recursive: true });
await writeFile(saved, JSON.stringify(partner, null, 2), { mode: 0o600 });

const now = Math.floor(Date.now() / 1000);
const mint = (user) =>
  new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(partner.partner_id)
    .setSubject(user)
    .setAudience("keaplink")
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(new TextEncoder().encode(partner.session_secret));

// Partner users are the partner's own ids (user-1001); Keap users are emails (ann@ab123.example).
for (const user of ["user-1001", "user-1002"]) {
  if (backendUrl) console.log(`  Demo page as partner user ${user}: ${base}/demo/#user=${user}&backend=${backendUrl}`);
  else console.log(`  Demo page as partner user ${user} (valid 1 h): ${base}/demo/#user=${user}&session=${await mint(user)}`);
}
if (backendUrl) console.log(`  MCP server for AI assistants (sign-in played by the demo back-end): ${base}/mcp/demo`);
console.log(kept
  ? "  Demo partner: kept from the last start (same API key and session secret and settings): .wrangler/demo-partner.json"
  : "  Demo partner: new API key and session secret in .wrangler/demo-partner.json (earlier ones, if any, no longer work)");
// The Worker's links outlive a restart (its local state is kept), and so do the Keap sandbox's
// tokens (scripts/dev keeps them beside it): earlier links work on as they were.
const links = await fetch(`${base}/v1/connections?limit=1`, { headers: { authorization: `Bearer ${partner.api_key}` } });
if (links.status === 200 && (await links.json()).connections.length > 0) {
  console.log("  Links from an earlier start: kept, with the Keap sandbox's tokens (rm -rf .wrangler/state starts both clean).");
}
