// Compile-time checks of the generated client (tsc --noEmit, in scripts/test): what the document
// allows type-checks, and what it does not is refused (each @ts-expect-error must be an error, or
// tsc fails). Never run.
import { createKeaplink, KeaplinkError, KeaplinkWebhookError, verifyWebhook } from "./keaplink.mjs";
import type { KeaplinkEvent, KeaplinkEventType } from "./keaplink.mjs";
import type { components } from "./schema.js";

type ErrorCode = components["schemas"]["ErrorDetail"]["code"];

export async function partnerBackEnd(baseUrl: string, apiKey: string): Promise<string> {
  const api = createKeaplink({ baseUrl, credential: apiKey });
  const { data, error, response } = await api.POST("/v1/token", { body: { user: "user-42", keap_app: "ab123" } });
  if (error) {
    // The codes this operation documents, and no other.
    const code: "no_connection" | "needs_reauth" | "ambiguous_connection" | "exported" | "keap_throttled" | "rate_limited"
      | "keap_error" | "keap_bad_response" | "keap_timeout" | "invalid_request" | "body_too_large"
      | "missing_credentials" | "invalid_api_key" | "internal" | "misconfigured" = error.error.code;
    void code;
    throw new KeaplinkError(response.status, error, response.headers);
  }
  const expires: string = data.expires_at;
  void expires;

  const page = await api.GET("/v1/connections", { params: { query: { limit: 100, status: "needs_reauth" } } });
  for (const c of page.data?.connections ?? []) {
    const who: string = `${c.user} ${c.keap_user.email} ${c.status}`;
    const failing: string | undefined = c.last_error?.code;
    void who; void failing;
  }
  const next: string | null | undefined = page.data?.cursor;
  void next;

  const detail = await api.GET("/v1/connections/{id}", { params: { path: { id: "8uLmQJ6sZ3x2WmN1pQr4Tw" } } });
  const kinds = detail.data?.events.map((e) => e.type);
  void kinds;

  // (An unknown body field is not caught here: openapi-fetch infers the body generically, so
  // TypeScript's excess-property check does not apply. The Worker refuses it: 400 invalid_request.)
  // @ts-expect-error: `user` is required
  await api.POST("/v1/token", { body: {} });
  // @ts-expect-error: no such path
  await api.GET("/v1/tokens");
  // @ts-expect-error: status is active | needs_reauth
  await api.GET("/v1/connections", { params: { query: { status: "gone" } } });
  // @ts-expect-error: the path parameter is required
  await api.DELETE("/v1/connections/{id}", {});
  return data.access_token;
}

export async function widgetSide(baseUrl: string, session: string): Promise<void> {
  const api = createKeaplink({ baseUrl, credential: session });
  const started = await api.POST("/v1/me/connect", { body: { sign_out_first: true, return_to: null } });
  const url: string | undefined = started.data?.authorize_url;
  void url;
  const mine = await api.GET("/v1/me/connections");
  const code: ErrorCode | undefined = mine.error?.error.code;
  void code;
}

export async function admin(baseUrl: string, adminToken: string): Promise<void> {
  const api = createKeaplink({ baseUrl, credential: adminToken });
  const put = await api.PUT("/v1/admin/partners/{partner_id}", {
    params: { path: { partner_id: "acme" } },
    body: { name: "Acme", allowed_origins: ["https://app.acme.example"], return_urls: [], reconnect_identity: "user" },
  });
  const shownOnce: string | undefined = put.data?.api_key;
  void shownOnce;
  // @ts-expect-error: reconnect_identity is user | app
  await api.PUT("/v1/admin/partners/{partner_id}", { params: { path: { partner_id: "a" } }, body: { name: "A", allowed_origins: [], return_urls: [], reconnect_identity: "anyone" } });
}

// A partner's webhook endpoint: the raw body and the two headers in, a typed event out.
export async function webhookReceiver(body: string, headers: Headers, sessionSecret: string): Promise<string> {
  let event: KeaplinkEvent;
  try {
    event = await verifyWebhook({
      body,
      signature: headers.get("keaplink-signature"),
      eventId: headers.get("keaplink-event-id"),
      sessionSecret,
    });
  } catch (e) {
    const reason: "malformed" | "stale" | "mismatch" | "event_id" | undefined = e instanceof KeaplinkWebhookError ? e.reason : undefined;
    return `refused: ${reason}`;
  }
  const kinds: KeaplinkEventType[] = ["connection.created", "connection.deleted", "connection.needs_reauth", "connection.recovered", "connection.expiring"];
  void kinds;
  // @ts-expect-error: not an event keaplink sends
  const unknown: KeaplinkEventType = "connection.updated";
  void unknown;
  switch (event.type) {
    case "connection.needs_reauth":
    case "connection.expiring": {
      // Only these two may carry a repair link.
      const repair: string | undefined = event.repair_url;
      return `${event.id} ${event.user} ${event.connection.keap_user.email} ${repair ?? ""}`;
    }
    case "connection.created": {
      // @ts-expect-error: connection.created carries no repair link
      void event.repair_url;
      return `${event.partner_id} ${event.connection.id} ${event.created_at}`;
    }
    case "import.finished": {
      // @ts-expect-error: import.finished is about no one link
      void event.connection;
      return `${event.import_id} ${event.counts.imported}/${event.total}`;
    }
    default:
      return event.connection.status;
  }
}
