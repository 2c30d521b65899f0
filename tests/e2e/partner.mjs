// A partner's site on its own origin (loopback): a settings page that embeds the widget from the
// Worker, under the strict CSP the README documents, and a session endpoint, both minting
// session JWTs the way a partner's back-end does.
import { createServer } from "node:http";
import { mintSession } from "./client.mjs";

export async function startPartnerSite({ workerUrl }) {
  let base;
  let partner;
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, base);
    // The partner's own sign-in: a cookie, so a return from Keap lands as the same user.
    const cookieUser = /(?:^|; )partner_user=([^;]+)/.exec(req.headers.cookie ?? "")?.[1];
    const user = url.searchParams.get("user") ?? (cookieUser && decodeURIComponent(cookieUser)) ?? "alice";
    if (url.pathname === "/session") {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify({ session: await mintSession(partner, user) }));
      return;
    }
    if (url.pathname === "/favicon.ico") {
      res.writeHead(204).end();
      return;
    }
    if (url.pathname !== "/settings") {
      res.writeHead(404).end();
      return;
    }
    const attrs = [];
    if (url.searchParams.get("mode") === "session-url") attrs.push(`session-url="/session?user=${encodeURIComponent(user)}"`);
    else if (url.searchParams.get("expired") === "1") {
      const now = Math.floor(Date.now() / 1000);
      attrs.push(`session="${await mintSession(partner, user, { iat: now - 700, exp: now - 100 })}"`);
    } else attrs.push(`session="${await mintSession(partner, user)}"`);
    if (url.searchParams.get("hop") === "off") attrs.push('sign-out-first="false"');
    attrs.push(`return-to="${base}/settings"`);
    res.writeHead(200, {
      "set-cookie": `partner_user=${encodeURIComponent(user)}; Path=/; SameSite=Lax`,
      "content-type": "text/html; charset=utf-8",
      // What a strict partner needs to allow (README, "Embedding").
      "content-security-policy": `default-src 'self'; script-src 'self' ${workerUrl} 'wasm-unsafe-eval'; connect-src 'self' ${workerUrl}; style-src 'self'`,
    });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Partner settings</title>
<script type="module" src="${workerUrl}/widget/keap-link.js"></script></head>
<body><h1>Settings for ${user}</h1><keap-link id="keap" ${attrs.join(" ")}></keap-link></body></html>`);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${server.address().port}`;
  return {
    url: base,
    /** The partner this site is (registered with this site's origin). */
    setPartner: (p) => { partner = p; },
    stop: () => new Promise((r) => server.close(r)),
  };
}
