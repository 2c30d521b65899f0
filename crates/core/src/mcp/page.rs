//! keaplink's consent page for an MCP client, and the pages that end an authorization that
//! cannot go on. No script; everything outside (the client's name, the partner's, the business
//! names) escaped; readable on a phone; a strict CSP pinned to the page's own style.

use super::oauth::Access;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use keaplink_api::McpTools;
use sha2::{Digest, Sha256};

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;padding:2rem 1rem;background:#f5f6f8;color:#1d2330}\
main{max-width:30rem;margin:0 auto;background:#fff;border:1px solid #d5d9e0;border-radius:10px;padding:1.5rem}\
h1{font-size:1.3rem;margin:0 0 .75rem}p{margin:.5rem 0}.muted{color:#5b6473;font-size:.9rem}.warn{color:#a15c00}\
fieldset{border:1px solid #d5d9e0;border-radius:8px;margin:.75rem 0;padding:.5rem .9rem}legend{font-weight:600;padding:0 .3rem}\
label{display:block;padding:.45rem 0;cursor:pointer}input{margin-right:.5rem;transform:scale(1.2)}\
.row{display:flex;gap:.75rem;margin-top:1rem}button{font:inherit;font-weight:600;border:0;border-radius:8px;padding:.7rem 1.2rem;cursor:pointer;flex:1}\
.allow{background:#2f6fdd;color:#fff}.deny{background:#e4e7ec;color:#1d2330}button:focus-visible{outline:3px solid #2f6fdd;outline-offset:3px}\
@media (prefers-color-scheme:dark){body{background:#12151b;color:#e8ebf0}main{background:#1b1f27;border-color:#3a4150}fieldset{border-color:#3a4150}.muted{color:#a3acba}.warn{color:#f0a84a}.deny{background:#2c323d;color:#e8ebf0}}";

/// The pages' CSP: no script, nothing loaded, only this style. No `form-action`: Allow's answer
/// redirects to the client's own redirect URI, which browsers would hold to it too.
pub fn csp() -> String {
    let hash = STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; frame-ancestors 'none'"
    )
}

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\"><title>{}</title><style>{STYLE}</style></head>\
<body><main><h1>{}</h1>{body}</main></body></html>",
        text(title),
        text(title)
    )
}

/// One of the user's active links, as the page offers it.
pub struct LinkChoice<'a> {
    pub connection_id: &'a str,
    pub business: &'a str,
    pub email: &'a str,
}

/// What the consent page shows.
pub struct Consent<'a> {
    pub client_name: &'a str,
    pub partner_name: &'a str,
    pub links: &'a [LinkChoice<'a>],
    /// The most this request may get (what it asked for, capped by the partner).
    pub access: Access,
    /// The sealed consent the forms carry.
    pub ticket: &'a str,
}

/// The consent page (200), or the page saying there is no link to grant (409).
pub fn consent(c: &Consent<'_>) -> (u16, String) {
    let client = text(c.client_name);
    let partner = text(c.partner_name);
    let intro = format!(
        "<p><strong>{client}</strong> <span class=\"warn\">(a name the client gave itself; keaplink has not verified it)</span> asks to use your Keap account through <strong>{partner}</strong>.</p>"
    );
    if c.links.is_empty() {
        let body = format!("{intro}<p>You have no working Keap link in {partner}. Connect your Keap account there first, then try again.</p>");
        return (409, shell("No Keap account to share", &body));
    }
    let mut links = String::new();
    for (i, l) in c.links.iter().enumerate() {
        let checked = if i == 0 { " checked" } else { "" };
        links.push_str(&format!(
            "<label><input type=\"radio\" name=\"connection\" value=\"{}\"{checked}>{} <span class=\"muted\">{}</span></label>",
            attr(l.connection_id),
            text(l.business),
            text(l.email)
        ));
    }
    let access = match c.access {
        McpTools::ReadWrite => "<fieldset><legend>What it may do</legend>\
<label><input type=\"radio\" name=\"access\" value=\"read\" checked>Read contacts and tags</label>\
<label><input type=\"radio\" name=\"access\" value=\"read_write\">Read, and also create contacts, apply tags and add notes</label></fieldset>".to_owned(),
        McpTools::Read => "<p>It may <strong>read</strong> contacts and tags; it cannot change anything.</p><input type=\"hidden\" name=\"access\" value=\"read\">".to_owned(),
    };
    let body = format!(
        "{intro}<form method=\"post\" action=\"/mcp/oauth/consent\"><input type=\"hidden\" name=\"consent\" value=\"{}\">\
<fieldset><legend>Which Keap account</legend>{links}</fieldset>{access}\
<p class=\"muted\">You can take this back at any time in {partner}: disconnecting this Keap account there ends it too.</p>\
<div class=\"row\"><button class=\"deny\" name=\"decision\" value=\"deny\">Deny</button><button class=\"allow\" name=\"decision\" value=\"allow\">Allow</button></div></form>",
        attr(c.ticket)
    );
    (
        200,
        shell(&format!("Allow {} to use Keap?", c.client_name), &body),
    )
}

/// A page that ends an authorization keaplink cannot send back to the client (its redirect URI
/// is not known to be the client's).
pub fn refused(message: &str) -> String {
    shell(
        "This connection cannot go on",
        &format!(
            "<p>{}</p><p class=\"muted\">Start again from your AI assistant.</p>",
            text(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_outside_text_and_pins_its_style() {
        let links = [LinkChoice {
            connection_id: "c\"1",
            business: "<b>Shop</b>",
            email: "a@b.example",
        }];
        let (status, html) = consent(&Consent {
            client_name: "<script>x</script>",
            partner_name: "Acme & Co",
            links: &links,
            access: McpTools::ReadWrite,
            ticket: "t\"x",
        });
        assert_eq!(status, 200);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;b&gt;Shop&lt;/b&gt;"));
        assert!(html.contains("Acme &amp; Co"));
        assert!(html.contains("value=\"t&quot;x\""));
        assert!(html.contains("not verified"));
        assert!(html.contains("read_write"));
        let hash = STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
        assert!(csp().contains(&hash));
        let (_, read_only) = consent(&Consent {
            client_name: "C",
            partner_name: "P",
            links: &links,
            access: McpTools::Read,
            ticket: "t",
        });
        assert!(!read_only.contains("read_write"));
        let (status, _) = consent(&Consent {
            client_name: "C",
            partner_name: "P",
            links: &[],
            access: McpTools::Read,
            ticket: "t",
        });
        assert_eq!(status, 409);
    }
}
