//! Request bodies from outside: the size limit and JSON decoding, with errors that name what is
//! wrong but never echo a value the caller sent (a misplaced token must not come back in an answer).

use crate::error::{ApiError, ErrorCode};
use serde::de::DeserializeOwned;

/// The contract's body limit.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        "The body is over the 16 KiB limit.",
    )
}

/// Decodes a JSON body of at most 16 KiB: every body keaplink takes is one JSON object. A blank
/// body reads as `default` when one is given.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], default: Option<T>) -> Result<T, ApiError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    decode_object(bytes, default)
}

/// `decode` for an endpoint with a larger limit (`too_large` names it).
pub fn decode_within<T: DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
    too_large: ApiError,
) -> Result<T, ApiError> {
    if bytes.len() > limit {
        return Err(too_large);
    }
    decode_object(bytes, None)
}

fn decode_object<T: DeserializeOwned>(bytes: &[u8], default: Option<T>) -> Result<T, ApiError> {
    // A UTF-8 byte order mark (Windows tools and some HTTP clients write one) is not content.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_none() {
        if let Some(d) = default {
            return Ok(d);
        }
    }
    // serde reads a struct from an array too (its fields by position): refused, as any body
    // that is not an object (`[...]`, a string, a number).
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "The body is not the JSON this endpoint takes: send a JSON object (`{...}`).",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "The body is not the JSON this endpoint takes: {}",
                describe(&e)
            ),
        )
    })
}

/// serde_json's data errors can quote the offending value (`invalid type: string "…"`), so only
/// field names (ours, or the caller's, cut short) and the expected type are kept.
fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => "not valid JSON.".into(),
        Category::Data => {
            let msg = e.to_string();
            let msg = msg.split(" at line").next().unwrap_or("");
            if let Some(field) = msg.strip_prefix("missing field ") {
                format!("missing field {}.", clip(field))
            } else if let Some(field) = msg.strip_prefix("duplicate field ") {
                format!("{} appears twice; send each field once.", clip(field))
            } else if let Some(rest) = msg.strip_prefix("unknown field ") {
                let field = rest.split(", expected").next().unwrap_or("");
                format!("unknown field {}.", clip(field))
            } else if let Some((_, expected)) = msg.rsplit_once(", expected ") {
                format!(
                    "a value has the wrong type or form (expected {}).",
                    clip(for_people(expected))
                )
            } else {
                "a value has the wrong type or form.".into()
            }
        }
    }
}

/// serde's name for what it expected, in the words of the API's documentation.
fn for_people(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        e if e.starts_with("struct ") || e == "a map" => "an object",
        e => e,
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        s.chars().take(MAX).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keaplink_api::{ConnectRequest, TokenRequest};

    #[test]
    fn wrong_types_never_echo_the_value() {
        let e = decode::<TokenRequest>(br#"{"user": 42, "keap_app": "xx1"}"#, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("expected a string"), "{}", e.message);
        let e = decode::<ConnectRequest>(br#"{"sign_out_first": "ya29.secret-token"}"#, None)
            .unwrap_err();
        assert!(!e.message.contains("secret-token"), "{}", e.message);
        assert!(e.message.contains("expected a boolean"), "{}", e.message);
    }

    #[test]
    fn only_an_object_is_a_body_and_types_are_named_as_the_docs_name_them() {
        for body in [&br#"["u1"]"#[..], br#""u1""#, b"42", b" [1, 2]"] {
            let e = decode::<TokenRequest>(body, None).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert!(e.message.contains("send a JSON object"), "{}", e.message);
        }
        let e =
            decode::<keaplink_api::RepairLinkRequest>(br#"{"ttl_secs": -5}"#, None).unwrap_err();
        assert!(
            e.message.contains("expected a whole number, 0 or more"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("u64"), "{}", e.message);
        assert!(decode::<TokenRequest>(b"[1,", None)
            .unwrap_err()
            .message
            .contains("send a JSON object"));
        assert!(decode::<TokenRequest>(b"{\"user\": ", None)
            .unwrap_err()
            .message
            .contains("not valid JSON"));
    }

    #[test]
    fn names_missing_and_unknown_fields() {
        let e = decode::<TokenRequest>(b"{}", None).unwrap_err();
        assert!(e.message.contains("missing field `user`"), "{}", e.message);
        let e = decode::<TokenRequest>(br#"{"user": "u", "usr": 1}"#, None).unwrap_err();
        assert!(e.message.contains("unknown field `usr`"), "{}", e.message);
        assert!(!e.message.contains("expected one of"), "{}", e.message);
    }

    #[test]
    fn names_a_field_sent_twice() {
        let e = decode::<TokenRequest>(br#"{"user": "a", "user": "b"}"#, None).unwrap_err();
        assert!(e.message.contains("`user` appears twice"), "{}", e.message);
    }

    #[test]
    fn blank_reads_as_the_default_only_where_there_is_one() {
        assert_eq!(
            decode(b" \n", Some(ConnectRequest::default())).unwrap(),
            ConnectRequest::default()
        );
        assert_eq!(
            decode::<TokenRequest>(b"", None).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn a_utf8_byte_order_mark_is_skipped_once() {
        let t: TokenRequest = decode(b"\xEF\xBB\xBF{\"user\": \"u1\"}", None).unwrap();
        assert_eq!(t.user, "u1");
        // Only one, and only at the start: a second is not JSON.
        let e = decode::<TokenRequest>(b"\xEF\xBB\xBF\xEF\xBB\xBF{\"user\": \"u1\"}", None)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(
            decode(b"\xEF\xBB\xBF", Some(ConnectRequest::default())).unwrap(),
            ConnectRequest::default()
        );
    }

    #[test]
    fn over_the_limit_is_413() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            decode::<TokenRequest>(&big, None).unwrap_err().code,
            ErrorCode::BodyTooLarge
        );
    }
}
