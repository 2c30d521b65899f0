//! Whether a Worker may serve with its `PUBLIC_URL`: the one rule that keeps a deploy made with
//! `wrangler.toml`'s loopback default (`http://127.0.0.1:8787`, right for `./scripts/dev`) from
//! running with redirect URIs and repair links that point at the user's own machine.
//!
//! A loopback `PUBLIC_URL` is allowed only while the requests come to a loopback host too (a local
//! run); a request that reached the Worker at any other host is refused, naming the setting.
//! Plain string work on the raw URL: the hot path pays no URL parse for it.

/// Whether `host` (as in a URL: `127.0.0.1`, `localhost`, `[::1]`, no port) is this machine:
/// `localhost` and its subdomains, 127.0.0.0/8, `::1`, and the unspecified `0.0.0.0` / `::`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    // Written out rather than through std::net's parsers: they would add to the Worker's wasm.
    if matches!(
        host.as_str(),
        "[::1]" | "[::]" | "[0:0:0:0:0:0:0:1]" | "[0:0:0:0:0:0:0:0]"
    ) {
        return true;
    }
    let octets: Vec<Option<u8>> = host.split('.').map(|p| p.parse().ok()).collect();
    if octets.len() != 4 || octets.iter().any(|o| o.is_none()) {
        return false;
    }
    octets[0] == Some(127) || octets.iter().all(|o| *o == Some(0))
}

/// The host of an absolute URL (`scheme://[userinfo@]host[:port]/…`), without its port; `None`
/// when there is none.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        &host_port[..=host_port.find(']')?]
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    (!host.is_empty()).then_some(host)
}

/// Why a Worker must not serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeRefusal {
    /// `PUBLIC_URL` is loopback but the request reached the Worker at another host: a deploy that
    /// kept the local default.
    LoopbackPublicUrl,
}

impl ServeRefusal {
    /// The operator's sentence: names the setting and the fix, never a value.
    pub fn message(self) -> &'static str {
        match self {
            ServeRefusal::LoopbackPublicUrl => {
                "PUBLIC_URL is a loopback address (wrangler.toml's local default) but this Worker is \
                 reached at another host: set PUBLIC_URL to the Worker's public origin and deploy \
                 again"
            }
        }
    }
}

/// Whether a request made to `request_url` may be served by a Worker whose `PUBLIC_URL` is
/// loopback (`public_url_is_loopback`, decided once per isolate with [`is_loopback_host`]).
pub fn may_serve(public_url_is_loopback: bool, request_url: &str) -> Result<(), ServeRefusal> {
    if !public_url_is_loopback {
        return Ok(());
    }
    match url_host(request_url) {
        Some(host) if is_loopback_host(host) => Ok(()),
        _ => Err(ServeRefusal::LoopbackPublicUrl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_this_machine_and_nothing_else() {
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "localhost",
            "LOCALHOST",
            "app.localhost",
            "localhost.",
            "[::1]",
            "0.0.0.0",
            "[::]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "keaplink.example.workers.dev",
            "keaplink.acme.example",
            "128.0.0.1",
            "10.0.0.1",
            "[2001:db8::1]",
            "localhost.example.com",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn the_host_of_a_url_without_port_or_userinfo() {
        assert_eq!(
            url_host("http://127.0.0.1:8787/v1/token"),
            Some("127.0.0.1")
        );
        assert_eq!(url_host("https://k.example"), Some("k.example"));
        assert_eq!(url_host("https://k.example?x=1"), Some("k.example"));
        assert_eq!(url_host("http://[::1]:8787/healthz"), Some("[::1]"));
        assert_eq!(url_host("http://u:p@k.example:1/"), Some("k.example"));
        assert_eq!(url_host("/relative"), None);
        assert_eq!(url_host("http:///nohost"), None);
    }

    #[test]
    fn a_loopback_public_url_serves_local_requests_only() {
        assert_eq!(may_serve(true, "http://127.0.0.1:8787/healthz"), Ok(()));
        assert_eq!(may_serve(true, "http://localhost:8787/v1/token"), Ok(()));
        assert_eq!(
            may_serve(true, "https://keaplink.acme.workers.dev/healthz"),
            Err(ServeRefusal::LoopbackPublicUrl)
        );
        assert_eq!(
            may_serve(true, "not a url"),
            Err(ServeRefusal::LoopbackPublicUrl)
        );
        // A public PUBLIC_URL serves whatever host the request came to (a custom domain and
        // workers.dev both route to the same Worker).
        assert_eq!(
            may_serve(false, "https://keaplink.acme.workers.dev/"),
            Ok(())
        );
        assert_eq!(may_serve(false, "http://127.0.0.1:8787/"), Ok(()));
        let m = ServeRefusal::LoopbackPublicUrl.message();
        assert!(m.contains("PUBLIC_URL") && !m.contains("127.0.0.1"), "{m}");
    }
}
