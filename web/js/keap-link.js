// Defines <keap-link> and hands its lifecycle to the wasm module: wasm-bindgen cannot subclass
// HTMLElement, so this is the only JavaScript the widget carries.
//
//   <script type="module" src="https://<worker>/widget/keap-link.js"></script>
//   <keap-link session="<JWT>"></keap-link>          or   session-url="/keap-session"
//
// Events on the element: keaplink:connected (detail.connection_id), keaplink:disconnected
// (detail.connection_id), keaplink:error (detail.error, .message; an identity_mismatch from the
// popup adds .signed_in and .expected, the two Keap users' emails).
import init, { mount as mountWasm } from "./keap_link_wasm.js";

// The Worker that serves this file is the one the widget talks to.
const API_BASE = new URL("..", import.meta.url).href;
const ready = init();

class KeapLinkElement extends HTMLElement {
  static observedAttributes = ["session", "session-url", "sign-out-first"];

  async connectedCallback() {
    await ready;
    if (!this.handle && this.isConnected) {
      // Mounting reads a same-tab return's outcome from the address bar; then it is cleaned.
      this.handle = mountWasm(this, this.getAttribute("api-base") || API_BASE);
      cleanReturn();
    }
  }

  attributeChangedCallback(_name, before, after) {
    if (before !== after) this.handle?.refresh();
  }

  disconnectedCallback() {
    this.handle?.destroy();
    this.handle = undefined;
  }

  /** Reloads the link status. */
  refresh() {
    this.handle?.refresh();
  }
}

/**
 * After a same-tab trip to Keap (a blocked popup), the page came back as
 * `?keaplink=connected&connection_id=…` (or `=error&reason=…`): the widget has read it and says
 * it; the address bar loses those parameters (history.replaceState: no reload, no new entry), so a
 * reload or a shared link does not announce it again. The page's own parameters stay.
 */
function cleanReturn() {
  const url = new URL(location.href);
  if (!url.searchParams.has("keaplink")) return;
  for (const name of ["keaplink", "connection_id", "reason"]) url.searchParams.delete(name);
  history.replaceState(history.state, "", url);
}

if (!customElements.get("keap-link")) customElements.define("keap-link", KeapLinkElement);

/**
 * Puts a widget into `target` (an element or a selector) and returns it.
 * `options`: { session, sessionUrl, signOutFirst, returnTo, texts: { connect: "...", ... } }.
 */
export function mount(target, options = {}) {
  const parent = typeof target === "string" ? document.querySelector(target) : target;
  if (!parent) throw new Error(`keap-link: no element ${target}`);
  const el = document.createElement("keap-link");
  if (options.session) el.setAttribute("session", options.session);
  if (options.sessionUrl) el.setAttribute("session-url", options.sessionUrl);
  if (options.signOutFirst === false) el.setAttribute("sign-out-first", "false");
  if (options.returnTo) el.setAttribute("return-to", options.returnTo);
  for (const [name, text] of Object.entries(options.texts ?? {})) el.setAttribute(`text-${name}`, text);
  parent.append(el);
  return el;
}

export { ready };
