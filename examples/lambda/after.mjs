// A partner's Lambda that adds a booking's customer to the user's Keap app (finds the contact by
// email, creates it if missing), calling Keap through keaplink. keaplink adds the user's token,
// heals a stale or revoked one, and answers 429 with the wait when Keap's quota says so.
// (Its "before" is before.mjs; docs/proxy.md compares the two.)
const { KEAPLINK_URL, KEAPLINK_API_KEY } = process.env;

async function keap(user, method, path, body) {
  const res = await fetch(`${KEAPLINK_URL}/v1/keap${path}`, {
    method,
    headers: {
      authorization: `Bearer ${KEAPLINK_API_KEY}`,
      "keaplink-user": user,
      ...(body ? { "content-type": "application/json" } : {}),
    },
    body: body && JSON.stringify(body),
  });
  if (res.status === 429) return { retryAfter: Number(res.headers.get("retry-after")) };
  if (res.headers.get("keaplink-error")) throw new Error((await res.json()).error.code);
  return { status: res.status, body: await res.json() };
}

export async function handler({ user, email, givenName }) {
  const filter = encodeURIComponent(`email==${email}`);
  const found = await keap(user, "GET", `/crm/rest/v2/contacts?filter=${filter}&page_size=1`);
  if (found.retryAfter) return { retryAfter: found.retryAfter };
  if (found.body.contacts.length) return { contactId: found.body.contacts[0].id, created: false };
  const made = await keap(user, "POST", "/crm/rest/v2/contacts", {
    given_name: givenName,
    email_addresses: [{ email, field: "EMAIL1" }],
  });
  if (made.retryAfter) return { retryAfter: made.retryAfter };
  return { contactId: made.body.id, created: true };
}
