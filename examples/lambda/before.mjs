// The same Lambda as after.mjs without keaplink's proxy: it gets the user's token from
// POST /v1/token and calls Keap itself. So it must also notice a token Keap refuses (revoked, or
// a copy a minute older than a refresh), find the link's id and force a refresh, then retry; and
// read Keap's quota headers itself to know how long to wait after a 429. What it cannot do:
// know that another Lambda already spent the minute, or leave the day's last calls to the
// refreshes that keep every link alive.
const { KEAPLINK_URL, KEAPLINK_API_KEY, KEAP_API_URL = "https://api.infusionsoft.com" } = process.env;
const auth = { authorization: `Bearer ${KEAPLINK_API_KEY}` };

async function keaplink(method, path, body) {
  const res = await fetch(`${KEAPLINK_URL}${path}`, {
    method,
    headers: { ...auth, ...(body ? { "content-type": "application/json" } : {}) },
    body: body && JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(json.error.code);
  return json;
}

async function linkId(user) {
  for (let cursor = ""; ; ) {
    const page = await keaplink("GET", `/v1/connections?limit=1000&cursor=${encodeURIComponent(cursor)}`);
    const mine = page.connections.find((c) => c.user === user);
    if (mine) return mine.id;
    if (!page.cursor) throw new Error("no_connection");
    cursor = page.cursor;
  }
}

/** Seconds until Keap's spent window starts over: the day's expiry, else the next minute. */
function waitFromHeaders(h) {
  const day = Number(h.get("x-keap-product-quota-available"));
  const expiry = Number(h.get("x-keap-product-quota-expiry-time"));
  if (day === 0 && expiry > Date.now()) return Math.ceil((expiry - Date.now()) / 1000);
  return 60 - Math.floor((Date.now() / 1000) % 60);
}

async function keap(user, method, path, body, token, healed = false) {
  token ??= (await keaplink("POST", "/v1/token", { user })).access_token;
  const res = await fetch(`${KEAP_API_URL}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body ? { "content-type": "application/json" } : {}),
    },
    body: body && JSON.stringify(body),
  });
  if (res.status === 401 && !healed) {
    await keaplink("POST", `/v1/connections/${await linkId(user)}/refresh`);
    return keap(user, method, path, body, undefined, true);
  }
  if (res.status === 429) return { retryAfter: waitFromHeaders(res.headers), token };
  return { status: res.status, body: await res.json(), token };
}

export async function handler({ user, email, givenName }) {
  const filter = encodeURIComponent(`email==${email}`);
  const found = await keap(user, "GET", `/crm/rest/v2/contacts?filter=${filter}&page_size=1`);
  if (found.retryAfter) return { retryAfter: found.retryAfter };
  if (found.body.contacts.length) return { contactId: found.body.contacts[0].id, created: false };
  const made = await keap(user, "POST", "/crm/rest/v2/contacts", {
    given_name: givenName,
    email_addresses: [{ email, field: "EMAIL1" }],
  }, found.token);
  if (made.retryAfter) return { retryAfter: made.retryAfter };
  return { contactId: made.body.id, created: true };
}
