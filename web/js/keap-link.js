// Defines <keap-link> and hands its lifecycle to the wasm module: wasm-bindgen cannot subclass
// HTMLElement, so this is the only JavaScript the widget carries.
import init, { mount } from "./keap_link_wasm.js";

const ready = init();

class KeapLink extends HTMLElement {
  async connectedCallback() {
    await ready;
    mount(this);
  }
}

if (!customElements.get("keap-link")) customElements.define("keap-link", KeapLink);
