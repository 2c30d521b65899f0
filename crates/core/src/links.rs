//! Which of a user's links a partner's back-end call names (`/v1/token`'s `keap_app`, the
//! proxy's `keaplink-app` header), and what to say when it names none.

use crate::error::{ApiError, ErrorCode};
use crate::keap::KeapApp;

/// How many of the user's other apps an answer names at most.
pub const MAX_APPS_NAMED: usize = 10;

/// The user has no link at all (or the call named no app and the user has none).
pub fn no_connection() -> ApiError {
    ApiError::new(ErrorCode::NoConnection, "No such connection.")
}

/// The call named `app`, where the user has no link; `others` are the apps the user does have
/// links in (read only on this failing path, in KV's order: by app id). With none, the plain
/// answer; else it names them (at most [`MAX_APPS_NAMED`]), so a partner sees at once that its
/// `keap_app` is the wrong one rather than the link missing.
pub fn no_link_in_app(app: &KeapApp, others: impl IntoIterator<Item = KeapApp>) -> ApiError {
    let mut listed = String::new();
    let mut more = 0;
    for (i, other) in others.into_iter().enumerate() {
        if i >= MAX_APPS_NAMED {
            more += 1;
            continue;
        }
        if i > 0 {
            listed.push_str(", ");
        }
        listed.push_str(other.as_str());
    }
    if listed.is_empty() {
        return no_connection();
    }
    if more > 0 {
        listed.push_str(&format!(" and {more} more"));
    }
    ApiError::new(
        ErrorCode::NoConnection,
        format!(
            "No such connection: this user has no link in the Keap app {}, but has links in: {listed}. Name one of those as keap_app (the keaplink-app header on /v1/keap/), or leave it out when the user has one link.",
            app.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(s: &str) -> KeapApp {
        KeapApp::parse(s).unwrap()
    }

    #[test]
    fn with_no_other_link_it_is_the_plain_answer() {
        let e = no_link_in_app(&app("zz999"), []);
        assert_eq!(e.code, ErrorCode::NoConnection);
        assert_eq!(e.message, "No such connection.");
    }

    #[test]
    fn names_the_apps_the_user_has_links_in() {
        let e = no_link_in_app(&app("zz999"), [app("ab123"), app("cd456")]);
        assert_eq!(e.code, ErrorCode::NoConnection);
        assert!(
            e.message.contains("no link in the Keap app zz999"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("has links in: ab123, cd456."),
            "{}",
            e.message
        );
    }

    #[test]
    fn names_at_most_ten() {
        let many: Vec<KeapApp> = (0..13).map(|i| app(&format!("a{i:02}"))).collect();
        let e = no_link_in_app(&app("zz999"), many);
        assert!(e.message.contains("a09 and 3 more."), "{}", e.message);
        assert!(!e.message.contains("a10"), "{}", e.message);
    }
}
