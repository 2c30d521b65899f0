// keaplink's API client: openapi-fetch over the types openapi-typescript generates from the
// OpenAPI document (schema.d.ts, from docs/openapi.json). Plain JavaScript with JSDoc types, so
// Node runs it as it is and TypeScript checks it (and every caller) against the document.
import createClient from "openapi-fetch";

/** @typedef {import("./schema.js").paths} paths */
/** @typedef {import("./schema.js").components} components */
/** @typedef {import("openapi-fetch").Client<paths>} KeaplinkClient */

/**
 * A client for keaplink's Worker. `credential` is sent as `Authorization: Bearer`: the partner's
 * API key (back-end and console operations), a user's session JWT (`/v1/me/*`), or the admin token.
 * @param {{ baseUrl: string, credential: string, fetch?: typeof globalThis.fetch }} options
 * @returns {KeaplinkClient}
 */
export function createKeaplink({ baseUrl, credential, fetch }) {
  if (!baseUrl) throw new Error("createKeaplink: baseUrl is required (the Worker's origin)");
  if (!credential) throw new Error("createKeaplink: credential is required (API key, session JWT or admin token)");
  /** @type {KeaplinkClient} */
  const client = createClient({ baseUrl, ...(fetch ? { fetch } : {}) });
  client.use({
    onRequest({ request }) {
      request.headers.set("authorization", `Bearer ${credential}`);
      return request;
    },
  });
  return client;
}

/**
 * The error keaplink answered, as an Error: `code` (branch on it), `status`, and `retryAfter`
 * (seconds, on a 429).
 */
export class KeaplinkError extends Error {
  /**
   * @param {number} status
   * @param {{ error: { code: string, message: string } } | undefined} body
   * @param {Headers} headers
   */
  constructor(status, body, headers) {
    super(body ? `${body.error.code}: ${body.error.message}` : `keaplink answered ${status}`);
    this.name = "KeaplinkError";
    this.status = status;
    this.code = body?.error.code ?? "unknown";
    this.retryAfter = Number(headers.get("retry-after")) || undefined;
  }
}
