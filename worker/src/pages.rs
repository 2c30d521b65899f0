//! The HTML pages keaplink answers (the OAuth callback's, the repair link's), each with its
//! strict CSP and the headers every page carries: never framed, never cached, no referrer.

use keaplink_core::flow::{self, error_page, CallbackAnswer};
use keaplink_core::repair::Page;
use keaplink_core::ErrorCode;
use worker::Response;

/// A page of `/link/…` or of the repair flow's end, under the repair pages' CSP.
pub fn repair(p: &Page<'_>) -> Response {
    let (status, html) = keaplink_core::repair::render(p);
    let mut resp = match Response::from_html(html) {
        Ok(r) => r.with_status(status),
        Err(_) => crate::http::bare(500),
    };
    let h = resp.headers_mut();
    let _ = h.set("content-security-policy", &keaplink_core::repair::csp());
    secure_page_headers(h);
    resp
}

pub fn secure_page_headers(h: &mut worker::Headers) {
    let _ = h.set("x-frame-options", "DENY");
    let _ = h.set("referrer-policy", "no-referrer");
    let _ = h.set("cache-control", "no-store");
    let _ = h.set("x-content-type-options", "nosniff");
}

pub fn callback(answer: CallbackAnswer) -> Response {
    let mut resp = match answer {
        CallbackAnswer::Redirect(to) => match crate::http::redirect(&to, 302) {
            Ok(r) => r,
            Err(_) => return callback(error_page(ErrorCode::Internal)),
        },
        CallbackAnswer::Page { status, html } => match Response::from_html(html) {
            Ok(r) => r.with_status(status),
            Err(_) => crate::http::bare(500),
        },
    };
    let h = resp.headers_mut();
    let _ = h.set("content-security-policy", &flow::popup_csp());
    secure_page_headers(h);
    resp
}
