// Seeds the demo partner in a running local Worker and prints demo page URLs with session JWTs,
// as a partner's back-end would mint them. Usage: node scripts/demo-partner.mjs <worker-url>
// (ADMIN_TOKEN in the environment). Its secrets go to .wrangler/demo-partner.json (git-ignored).
import { SignJWT } from "jose";
import { mkdir, writeFile } from "node:fs/promises";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const base = process.argv[2];
const admin = process.env.ADMIN_TOKEN;
if (!base || !admin) {
  console.error("usage: ADMIN_TOKEN=... node scripts/demo-partner.mjs <worker-url>");
  process.exit(2);
}

const res = await fetch(`${base}/v1/admin/partners/demo`, {
  method: "PUT",
  headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
  body: JSON.stringify({
    name: "Demo partner",
    allowed_origins: [new URL(base).origin],
    return_urls: [`${base}/demo/`],
    // The demo's secrets are shown once; rotating on every start keeps them in hand.
    rotate_secrets: true,
  }),
});
if (res.status !== 200) {
  console.error(`could not register the demo partner: ${res.status} ${await res.text()}`);
  process.exit(1);
}
const partner = await res.json();
await mkdir(join(root, ".wrangler"), { recursive: true });
await writeFile(join(root, ".wrangler", "demo-partner.json"), JSON.stringify(partner, null, 2), { mode: 0o600 });

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

for (const user of ["alice", "bob"]) {
  console.log(`  Demo page as partner user "${user}": ${base}/demo/#user=${user}&session=${await mint(user)}`);
}
console.log(`  Demo partner's API key and session secret: .wrangler/demo-partner.json`);
