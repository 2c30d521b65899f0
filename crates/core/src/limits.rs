//! Abuse limits: which Workers rate-limiting binding guards which endpoint, keyed by what, and
//! what a refused caller is told. The limits themselves (count per period) are set on the
//! bindings in wrangler.toml; the periods here must match them (a test reads wrangler.toml).
//!
//! Every endpoint that costs us or Keap something is limited twice: per client IP, checked
//! before any credential is looked at (so guessing keys or states is throttled too), and per
//! partner, once the partner is known (so one partner cannot starve the others).

use crate::error::{ApiError, ErrorCode};
use crate::ids::PartnerId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/me/connect`: starts a Keap flow.
    Connect,
    /// `GET /oauth/callback`: spends a state and a Keap code exchange.
    Callback,
    /// `POST /v1/token`: the partner back-end's hot path.
    Token,
    /// `/v1/keap/<path>`: calls relayed to Keap (per partner: one partner's import must not
    /// starve the others' share of Keap's quota).
    Proxy,
    /// `POST /mcp/oauth/register`: an MCP client's registration (per address, the flow's window).
    McpRegister,
    /// The MCP authorization server's other endpoints (authorize, continue, consent, token,
    /// revoke), per address, the flow's window.
    McpOAuth,
    /// `/mcp/{partner_id}`: MCP requests, counted as proxied calls are.
    Mcp,
}

/// One call to a rate-limiting binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCheck {
    pub binding: &'static str,
    pub key: String,
    pub period_secs: u32,
}

/// The OAuth flow (connect + callback) per IP and per partner: 60 s windows.
pub const FLOW_IP_BINDING: &str = "LIMIT_FLOW_IP";
pub const FLOW_PARTNER_BINDING: &str = "LIMIT_FLOW_PARTNER";
pub const FLOW_PERIOD_SECS: u32 = 60;
/// The token endpoint per IP and per partner: 10 s windows, so a burst clears quickly.
pub const TOKEN_IP_BINDING: &str = "LIMIT_TOKEN_IP";
pub const TOKEN_PARTNER_BINDING: &str = "LIMIT_TOKEN_PARTNER";
pub const TOKEN_PERIOD_SECS: u32 = 10;
/// Proxied calls per address and per partner: 10 s windows.
pub const PROXY_IP_BINDING: &str = "LIMIT_PROXY_IP";
pub const PROXY_PARTNER_BINDING: &str = "LIMIT_PROXY_PARTNER";
pub const PROXY_PERIOD_SECS: u32 = 10;

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Connect => "connect",
            Endpoint::Callback => "callback",
            Endpoint::Token => "token",
            Endpoint::Proxy => "proxy",
            Endpoint::McpRegister => "mcp_register",
            Endpoint::McpOAuth => "mcp_oauth",
            Endpoint::Mcp => "mcp",
        }
    }

    /// Checked first, before credentials. `ip` is the client address the edge reports
    /// (`CF-Connecting-IP`); without one, all such callers share one bucket.
    pub fn per_ip(self, ip: Option<&str>) -> LimitCheck {
        let ip = ip
            .filter(|s| !s.is_empty() && s.len() <= 64)
            .unwrap_or("unknown");
        let (binding, period_secs) = match self {
            Endpoint::Connect | Endpoint::Callback | Endpoint::McpRegister | Endpoint::McpOAuth => {
                (FLOW_IP_BINDING, FLOW_PERIOD_SECS)
            }
            Endpoint::Token => (TOKEN_IP_BINDING, TOKEN_PERIOD_SECS),
            Endpoint::Proxy | Endpoint::Mcp => (PROXY_IP_BINDING, PROXY_PERIOD_SECS),
        };
        LimitCheck {
            binding,
            key: format!("{}:ip:{ip}", self.name()),
            period_secs,
        }
    }

    /// Checked once the partner is known (after its credential, or from the state).
    pub fn per_partner(self, partner: &PartnerId) -> LimitCheck {
        let (binding, period_secs) = match self {
            Endpoint::Connect | Endpoint::Callback | Endpoint::McpRegister | Endpoint::McpOAuth => {
                (FLOW_PARTNER_BINDING, FLOW_PERIOD_SECS)
            }
            Endpoint::Token => (TOKEN_PARTNER_BINDING, TOKEN_PERIOD_SECS),
            Endpoint::Proxy | Endpoint::Mcp => (PROXY_PARTNER_BINDING, PROXY_PERIOD_SECS),
        };
        LimitCheck {
            binding,
            key: format!("{}:partner:{}", self.name(), partner.as_str()),
            period_secs,
        }
    }
}

impl LimitCheck {
    /// The answer when the binding says no. `retry-after` is the whole window: the binding
    /// does not say where in its window it is, and a whole window is always enough.
    pub fn refused(&self) -> ApiError {
        let whom = if self.key.contains(":ip:") {
            "from this address"
        } else {
            "for this partner"
        };
        ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "Too many requests {whom}; try again in {} seconds.",
                self.period_secs
            ),
        )
        .with_retry_after(self.period_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_endpoints_ips_and_partners() {
        let acme = PartnerId::parse("acme").unwrap();
        let c = Endpoint::Connect.per_ip(Some("203.0.113.9"));
        assert_eq!(c.binding, FLOW_IP_BINDING);
        assert_eq!(c.key, "connect:ip:203.0.113.9");
        assert_ne!(c.key, Endpoint::Callback.per_ip(Some("203.0.113.9")).key);
        assert_eq!(Endpoint::Token.per_partner(&acme).key, "token:partner:acme");
        assert_eq!(Endpoint::Token.per_ip(None).key, "token:ip:unknown");
        assert_eq!(
            Endpoint::Token.per_ip(Some(&"x".repeat(65))).key,
            "token:ip:unknown"
        );
    }

    #[test]
    fn refusals_are_429_with_the_window_to_wait() {
        let e = Endpoint::Token.per_ip(Some("::1")).refused();
        assert_eq!(e.status(), 429);
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.retry_after, Some(TOKEN_PERIOD_SECS));
        assert!(e.message.contains("from this address"));
        let acme = PartnerId::parse("acme").unwrap();
        assert_eq!(
            Endpoint::Connect.per_partner(&acme).refused().retry_after,
            Some(60)
        );
    }

    /// The periods above are what wrangler.toml configures, binding by binding.
    #[test]
    fn periods_match_wrangler_toml() {
        let toml = include_str!("../../../wrangler.toml");
        for (binding, period) in [
            (FLOW_IP_BINDING, FLOW_PERIOD_SECS),
            (FLOW_PARTNER_BINDING, FLOW_PERIOD_SECS),
            (TOKEN_IP_BINDING, TOKEN_PERIOD_SECS),
            (TOKEN_PARTNER_BINDING, TOKEN_PERIOD_SECS),
            (PROXY_IP_BINDING, PROXY_PERIOD_SECS),
            (PROXY_PARTNER_BINDING, PROXY_PERIOD_SECS),
        ] {
            let at = toml
                .find(&format!("name = \"{binding}\""))
                .unwrap_or_else(|| panic!("{binding} is not in wrangler.toml"));
            let block = &toml[at..];
            let simple = block.lines().find(|l| l.starts_with("simple")).unwrap();
            assert!(
                simple.contains(&format!("period = {period}")),
                "{binding}: {simple}"
            );
        }
    }
}
