//! Which view the page's hash names (`#links`, `#link/<id>`, ...): back, forward and reload work,
//! and a view can be linked to. Only ids and a status filter ever go into the hash; the search
//! text, a credential or a repair link never do.

use keaplink_api::ConnectionStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Links(Option<ConnectionStatus>),
    Link(String),
    Overview,
    Webhooks,
    Settings,
    /// The operator's partner picker.
    Partners,
}

impl Route {
    /// The view `hash` (with or without its `#`) names; anything unknown is the links.
    pub fn parse(hash: &str) -> Route {
        let h = hash.trim_start_matches('#');
        let (path, query) = h.split_once('?').unwrap_or((h, ""));
        match path {
            "overview" => Route::Overview,
            "webhooks" => Route::Webhooks,
            "settings" => Route::Settings,
            "partners" => Route::Partners,
            _ => match path.strip_prefix("link/") {
                Some(id) if !id.is_empty() => Route::Link(decode(id)),
                _ => Route::Links(
                    query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("status="))
                        .and_then(crate::wire::status),
                ),
            },
        }
    }

    pub fn hash(&self) -> String {
        match self {
            Route::Links(None) => "#links".into(),
            Route::Links(Some(s)) => format!("#links?status={}", crate::wire::status_name(*s)),
            Route::Link(id) => format!("#link/{}", encode(id)),
            Route::Overview => "#overview".into(),
            Route::Webhooks => "#webhooks".into(),
            Route::Settings => "#settings".into(),
            Route::Partners => "#partners".into(),
        }
    }

    /// The navigation entry this view belongs to.
    pub fn section(&self) -> &'static str {
        match self {
            Route::Links(_) | Route::Link(_) => "links",
            Route::Overview => "overview",
            Route::Webhooks => "webhooks",
            Route::Settings => "settings",
            Route::Partners => "partners",
        }
    }
}

/// Connection ids are URL-safe base64 (`[A-Za-z0-9_-]`); anything else is percent-encoded so a
/// hash can always be read back.
fn encode(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| (bytes.get(j)).and_then(|c| (*c as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_reads_back_from_its_hash() {
        for r in [
            Route::Links(None),
            Route::Links(Some(ConnectionStatus::NeedsReauth)),
            Route::Links(Some(ConnectionStatus::Active)),
            Route::Link("8uLmQJ6sZ3x2WmN1pQr4Tw".into()),
            Route::Link("odd id/é?#".into()),
            Route::Overview,
            Route::Webhooks,
            Route::Settings,
            Route::Partners,
        ] {
            assert_eq!(Route::parse(&r.hash()), r, "{}", r.hash());
        }
    }

    #[test]
    fn unknown_hashes_show_the_links() {
        assert_eq!(Route::parse(""), Route::Links(None));
        assert_eq!(Route::parse("#"), Route::Links(None));
        assert_eq!(Route::parse("#nowhere"), Route::Links(None));
        assert_eq!(Route::parse("#link/"), Route::Links(None));
        assert_eq!(Route::parse("#links?status=bogus"), Route::Links(None));
    }

    #[test]
    fn an_id_cannot_break_out_of_the_hash() {
        let h = Route::Link("a\"<b>&c".into()).hash();
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"#/%-_".contains(&b)),
            "{h}"
        );
    }
}
