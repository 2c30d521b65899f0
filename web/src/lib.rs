//! The `<keap-link>` widget, compiled to wasm.
//!
//! A few lines of JS (`web/js/keap-link.js`) define the custom element, because wasm-bindgen
//! cannot subclass `HTMLElement`; everything the element shows is built here, inside a shadow
//! root so the partner's CSS cannot reach it.

use wasm_bindgen::prelude::*;
use web_sys::{HtmlElement, ShadowRootInit, ShadowRootMode};

/// Renders the widget into `host`, the `<keap-link>` element. Safe to call again: it reuses the
/// element's shadow root.
#[wasm_bindgen]
pub fn mount(host: &HtmlElement) -> Result<(), JsValue> {
    let root = match host.shadow_root() {
        Some(root) => root,
        None => host.attach_shadow(&ShadowRootInit::new(ShadowRootMode::Open))?,
    };
    root.set_inner_html(PLACEHOLDER);
    host.set_attribute("data-rendered-by", "wasm")?;
    Ok(())
}

const PLACEHOLDER: &str = r#"<style>
:host { display: block; font: 14px/1.4 system-ui, sans-serif; }
.card { border: 1px solid #ccd; border-radius: 8px; padding: 12px 16px; }
</style>
<div class="card" part="card" role="status" aria-live="polite">Keap link</div>"#;
