//! Query strings of our own endpoints: each parameter at most once, only the ones an endpoint
//! takes, and one rule for `limit`. Errors name the parameter and the rule, never echo a value.

use crate::error::{ApiError, ErrorCode};
use crate::vec_map::VecMap;

pub const MAX_QUERY_BYTES: usize = 4096;

fn bad(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// The parameters of `query` (without the `?`), decoded. Refused: a parameter this endpoint does
/// not take, one that appears twice, or a query over 4 KiB.
pub fn parse(query: &str, takes: &[&str]) -> Result<VecMap<String, String>, ApiError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(bad("The query string is over 4 KiB.".into()));
    }
    let mut out = VecMap::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if !takes.contains(&k.as_ref()) {
            let known = if takes.is_empty() {
                "This endpoint takes no query parameters.".to_owned()
            } else {
                format!("It takes: {}.", takes.join(", "))
            };
            // Named only when it reads as a parameter's name: a key or a token pasted into the
            // query (`?klk.acme.…`, `?eyJ…`) must not come back in the answer.
            return Err(bad(if looks_like_a_name(&k) {
                format!("Unknown query parameter `{k}`. {known}")
            } else {
                format!("The query holds something that is not one of this endpoint's parameters. {known}")
            }));
        }
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(bad(format!(
                "`{k}` appears twice in the query string; send it once."
            )));
        }
    }
    Ok(out)
}

/// A parameter's name as people write them (`limit`, `page_size`, `utm-source`): short, a letter
/// first, then letters, digits, `_` or `-`. Anything else is not quoted back.
fn looks_like_a_name(k: &str) -> bool {
    k.len() <= 32
        && k.starts_with(|c: char| c.is_ascii_alphabetic())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `limit`: absent → `default`, else a whole number from 1 to `max`.
pub fn limit(raw: Option<&str>, default: u64, max: u64) -> Result<u64, ApiError> {
    match raw {
        None => Ok(default),
        Some(l) => l
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| bad(format!("limit must be a whole number from 1 to {max}."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_pasted_into_the_query_is_never_quoted_back() {
        for q in [
            "klk.acme.secret-part-of-a-key",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.sig",
            "access_token_that_is_far_too_long_to_be_a_name=1",
            "%00x=1",
        ] {
            let e = parse(q, &[]).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert!(!e.message.contains("secret"), "{}", e.message);
            assert!(!e.message.contains("eyJ"), "{}", e.message);
            assert!(!e.message.contains("far_too_long"), "{}", e.message);
            assert!(
                e.message.contains("not one of this endpoint's parameters"),
                "{}",
                e.message
            );
        }
        let e = parse("utm-source=mail", &[]).unwrap_err();
        assert!(
            e.message.contains("Unknown query parameter `utm-source`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn names_the_parameter_and_the_rule() {
        let q = parse("limit=5&cursor=abc", &["limit", "cursor"]).unwrap();
        assert_eq!(q.get("limit").map(String::as_str), Some("5"));
        let e = parse("limit=5&limit=6", &["limit"]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("`limit` appears twice"), "{}", e.message);
        let e = parse("limt=5", &["limit", "cursor"]).unwrap_err();
        assert!(
            e.message.contains("Unknown query parameter `limt`"),
            "{}",
            e.message
        );
        assert!(e.message.contains("limit, cursor"), "{}", e.message);
        assert!(parse("x=1", &[])
            .unwrap_err()
            .message
            .contains("takes no query"));
        assert!(parse("", &[]).unwrap().is_empty());
        assert!(parse(&"a".repeat(5000), &["a"]).is_err());
    }

    #[test]
    fn one_rule_for_limit() {
        assert_eq!(limit(None, 100, 1000).unwrap(), 100);
        assert_eq!(limit(Some("1000"), 100, 1000).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "1.5", "abc", ""] {
            let e = limit(Some(bad), 100, 1000).unwrap_err();
            assert!(e.message.contains("from 1 to 1000"), "{bad}");
        }
    }
}
