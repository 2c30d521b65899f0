// A partner's site on its own origin (loopback): a settings page that embeds the widget from the
// Worker, under the strict CSP the README documents, and a session endpoint, both minting
// session JWTs the way a partner's back-end does. Query options of /settings: `mode=session-url`,
// `session=expired|long|audience` (a JWT the Worker refuses), `hop=off`, `scheme=<color-scheme>`
// (the page's own, as a <meta>), `theme=<widget theme>`. /session?stale=1 hands each user an
// expired JWT first, as a partner's cache might.
import { createServer } from "node:http";
import { mintSession } from "./client.mjs";

export async function startPartnerSite({ workerUrl }) {
  let base;
  let partner;
  const sessionCalls = new Map();
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, base);
    // The partner's own sign-in: a cookie, so a return from Keap lands as the same user.
    const cookieUser = /(?:^|; )partner_user=([^;]+)/.exec(req.headers.cookie ?? "")?.[1];
    const user = url.searchParams.get("user") ?? (cookieUser && decodeURIComponent(cookieUser)) ?? "alice";
    if (url.pathname === "/session") {
      const calls = (sessionCalls.get(user) ?? 0) + 1;
      sessionCalls.set(user, calls);
      const now = Math.floor(Date.now() / 1000);
      const stale = url.searchParams.get("stale") === "1" && calls === 1;
      const session = await mintSession(partner, user, stale ? { iat: now - 700, exp: now - 100 } : {});
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify({ session }));
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
    // Every option lands in HTML: words only.
    const q = (name) => url.searchParams.get(name)?.match(/^[a-z -]+$/)?.[0] ?? null;
    const now = Math.floor(Date.now() / 1000);
    // JWTs the Worker refuses: past their exp; living longer than 3600 s; for another audience.
    const refused = {
      expired: { iat: now - 700, exp: now - 100 },
      long: { iat: now, exp: now + 7200 },
      audience: { aud: "someone-else" },
    };
    if (q("mode") === "session-url") attrs.push(`session-url="/session?user=${encodeURIComponent(user)}${url.searchParams.get("stale") === "1" ? "&stale=1" : ""}"`);
    else attrs.push(`session="${await mintSession(partner, user, refused[q("session")] ?? {})}"`);
    if (q("hop") === "off") attrs.push('sign-out-first="false"');
    if (q("theme")) attrs.push(`theme="${q("theme")}"`);
    const scheme = q("scheme") ? `<meta name="color-scheme" content="${q("scheme")}">` : "";
    attrs.push(`return-to="${base}/settings"`);
    res.writeHead(200, {
      "set-cookie": `partner_user=${encodeURIComponent(user)}; Path=/; SameSite=Lax`,
      "content-type": "text/html; charset=utf-8",
      // What a strict partner needs to allow (README, "Embedding").
      "content-security-policy": `default-src 'self'; script-src 'self' ${workerUrl} 'wasm-unsafe-eval'; connect-src 'self' ${workerUrl}; style-src 'self'`,
    });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Partner settings</title>
${scheme}<script type="module" src="${workerUrl}/widget/keap-link.js"></script></head>
<body><h1>Settings for ${user}</h1><keap-link id="keap" ${attrs.join(" ")}></keap-link></body></html>`);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${server.address().port}`;
  return {
    url: base,
    /** The partner this site is (registered with this site's origin). */
    setPartner: (p) => { partner = p; },
    /** How many sessions /session handed to `user`. */
    sessionCalls: (user) => sessionCalls.get(user) ?? 0,
    stop: () => new Promise((r) => server.close(r)),
  };
}
