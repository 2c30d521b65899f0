//! Property tests of the core's rules: sealing, session JWTs, the refresh policy.

use keaplink_api::ConnectionStatus;
use keaplink_core::connection::MIN_TOKEN_VALIDITY_SECS;
use keaplink_core::flow::{StateToken, STATE_BYTES};
use keaplink_core::ids::PartnerId;
use keaplink_core::keep::{KeepPolicy, Uses};
use keaplink_core::refresh::{DueReason, RefreshPolicy, RefreshState};
use keaplink_core::seal::{Keyring, NONCE_LEN};
use keaplink_core::session;
use proptest::prelude::*;

const K1: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const K2: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

proptest! {
    #[test]
    fn sealing_round_trips(plain in proptest::collection::vec(any::<u8>(), 0..512), aad in "[a-z/]{1,40}", nonce in any::<[u8; NONCE_LEN]>()) {
        let ring = Keyring::parse(K1).unwrap();
        let sealed = ring.seal(&aad, &plain, nonce);
        prop_assert_eq!(ring.open(&aad, &sealed).unwrap(), plain);
    }

    #[test]
    fn sealing_rejects_any_tampered_character(plain in proptest::collection::vec(any::<u8>(), 1..64), at in any::<prop::sample::Index>(), to in "[A-Za-z0-9_.-]") {
        let ring = Keyring::parse(K1).unwrap();
        let sealed = ring.seal("c/p/u/a", &plain, [9; NONCE_LEN]);
        let i = at.index(sealed.len());
        let mut tampered = sealed.clone();
        tampered.replace_range(i..=i, &to);
        prop_assume!(tampered != sealed);
        prop_assert!(ring.open("c/p/u/a", &tampered).is_err());
    }

    #[test]
    fn sealing_rejects_a_wrong_key_or_place(plain in proptest::collection::vec(any::<u8>(), 0..64), aad in "[a-z]{1,10}", other in "[a-z]{1,10}") {
        let sealed = Keyring::parse(K1).unwrap().seal(&aad, &plain, [1; NONCE_LEN]);
        prop_assert!(Keyring::parse(K2).unwrap().open(&aad, &sealed).is_err());
        prop_assume!(aad != other);
        prop_assert!(Keyring::parse(K1).unwrap().open(&other, &sealed).is_err());
    }

    #[test]
    fn no_mutation_of_a_valid_session_verifies(at in any::<prop::sample::Index>(), to in "[A-Za-z0-9_.=-]") {
        let now = 1_800_000_000_i64;
        let token = mint(now);
        let partner = PartnerId::parse("acme").unwrap();
        prop_assert!(session::verify(&token, &partner, SECRET, now).is_ok());
        let i = at.index(token.len());
        let mut mutated = token.clone();
        mutated.replace_range(i..=i, &to);
        prop_assume!(mutated != token);
        prop_assert!(session::verify(&mutated, &partner, SECRET, now).is_err(), "{}", mutated);
    }

    #[test]
    fn the_policy_never_refreshes_a_dead_link(expires in 0_i64..4_000_000, issued in 0_i64..4_000_000, now in 0_i64..4_000_000, failures in 0_u32..40) {
        let s = RefreshState {
            id: "c",
            status: ConnectionStatus::NeedsReauth,
            failed_with: None,
            access_expires_at: expires,
            refresh_issued_at: issued,
            refresh_expires_at: issued + 45 * 86_400,
            failed_at: (failures > 0).then_some(now / 2),
            failures,
            uses: Uses { last: Some(now / 3), prev: None },
        };
        prop_assert_eq!(RefreshPolicy::default().due(&s, now), None);
    }

    #[test]
    fn a_due_link_never_waits_past_its_expiry(expires_in in 121_i64..100_000, failed_ago in 0_i64..10_000, failures in 1_u32..40, id in "[a-zA-Z0-9]{22}") {
        // A link inside the refresh margin that failed recently: its next attempt comes before
        // its access token runs out (with the 60 s the contract promises to spare).
        let now = 1_000_000;
        let policy = RefreshPolicy::default();
        let s = RefreshState {
            id: &id,
            status: ConnectionStatus::Active,
            failed_with: None,
            access_expires_at: now + expires_in.min(policy.margin_secs - 1),
            refresh_issued_at: now,
            refresh_expires_at: now + 45 * 86_400,
            failed_at: Some(now - failed_ago),
            failures,
            uses: Uses { last: Some(now - failed_ago), prev: None },
        };
        let next = policy.next_attempt_at(&s);
        prop_assert!(next <= s.access_expires_at - MIN_TOKEN_VALIDITY_SECS);
        prop_assert!(policy.due(&s, next.max(now)).is_some());
    }
}

proptest! {
    /// Whatever its id, age and use, an active link that has not failed is due for a keep-alive
    /// no later than its refresh token's death minus the idle margin: no link dies of age while
    /// Keap answers.
    #[test]
    fn no_active_link_gets_past_its_keepalive(id in "[a-zA-Z0-9]{22}", issued in 0_i64..10_000_000, expires_after in 0_i64..200_000, last_use in proptest::option::of(0_i64..10_000_000), prev_gap in proptest::option::of(0_i64..2_000_000)) {
        let p = RefreshPolicy::default();
        let dies = issued + p.refresh_lifetime_secs;
        let s = RefreshState {
            id: &id,
            status: ConnectionStatus::Active,
            failed_with: None,
            access_expires_at: issued + expires_after,
            refresh_issued_at: issued,
            refresh_expires_at: dies,
            failed_at: None,
            failures: 0,
            uses: Uses { last: last_use, prev: last_use.zip(prev_gap).map(|(l, g)| l - g) },
        };
        prop_assert!(p.due(&s, p.keep.latest_keepalive(dies)).is_some());
        // ...and never due for keep-alive before its own spread window opens.
        let early = dies - p.keep.idle_margin_secs - p.keep.idle_spread_secs - 1;
        prop_assert_ne!(p.due(&s, early), Some(DueReason::KeepAlive));
    }

    /// A link in use is due strictly before its token falls under the token path's margin: the
    /// sweep has a lead's worth of time to refresh it before a caller would have to.
    #[test]
    fn a_link_in_use_is_due_a_lead_before_callers_need_it(expires_in in 0_i64..200_000, used_ago in 0_i64..172_800) {
        let now = 10_000_000;
        let p = RefreshPolicy::default();
        let s = RefreshState {
            id: "c",
            status: ConnectionStatus::Active,
            failed_with: None,
            access_expires_at: now + expires_in,
            refresh_issued_at: now - 3_600,
            refresh_expires_at: now + 40 * 86_400,
            failed_at: None,
            failures: 0,
            uses: Uses { last: Some(now - used_ago), prev: None },
        };
        let fresh_for_callers = p.is_fresh(&s, now);
        let due = p.due(&s, now) == Some(DueReason::AccessExpiring);
        // Not fresh for a caller implies due for the sweep; and due only within the lead.
        prop_assert!(fresh_for_callers || due);
        prop_assert_eq!(due, expires_in < p.margin_secs + p.keep.lead_secs);
    }

    /// Recording use never writes twice within a window, and a link called at least once per
    /// window is in use at every moment in between, from its second recorded use on.
    #[test]
    fn use_recording_is_sparse_and_keeps_regular_links_in_use(gaps in proptest::collection::vec(1_i64..172_800, 1..40)) {
        let k = KeepPolicy::default();
        let mut uses = Uses::default();
        let mut t = 0_i64;
        let mut last_write: Option<i64> = None;
        for gap in gaps {
            if let Some(u) = k.record_use(uses, t) {
                if let Some(w) = last_write { prop_assert!(t - w >= k.in_use_secs); }
                last_write = Some(t);
                uses = u;
            }
            // Once two uses are recorded (a first use alone counts for one window).
            if uses.prev.is_some() {
                prop_assert!(k.in_use(uses, t + gap - 1));
            }
            t += gap;
        }
    }
}

const SECRET: &[u8] = b"partner-session-secret-0123456789";

/// A valid session token (HS256), assembled by hand.
fn mint(now: i64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let claims = serde_json::json!({"iss": "acme", "sub": "u1", "aud": "keaplink", "iat": now - 5, "exp": now + 600});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    m.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
    )
}

proptest! {
    /// A state is stored under a key derived from it alone: two states never share a slot (so
    /// taking one cannot consume or reveal another), the key does not contain the state (a KV
    /// reader cannot replay it), and only what `from_random` makes parses.
    #[test]
    fn states_have_private_distinct_slots(a in any::<[u8; STATE_BYTES]>(), b in any::<[u8; STATE_BYTES]>()) {
        let (sa, sb) = (StateToken::from_random(a), StateToken::from_random(b));
        prop_assert_eq!(a == b, sa.storage_key() == sb.storage_key());
        prop_assert!(!sa.storage_key().contains(sa.as_str()));
        prop_assert_eq!(StateToken::parse(sa.as_str()).map(|s| s.storage_key()), Some(sa.storage_key()));
    }

    #[test]
    fn only_state_shaped_text_parses(raw in "\\PC{0,60}") {
        if let Some(s) = StateToken::parse(&raw) {
            prop_assert_eq!(s.as_str().len(), 43);
            prop_assert!(s.as_str().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        }
    }

    /// Re-sealing under a rotated keyring opens to the same plaintext, under the new key only.
    #[test]
    fn reseal_preserves_plaintext(plain in proptest::collection::vec(any::<u8>(), 0..256), aad in "[a-z/]{1,30}", n1 in any::<[u8; NONCE_LEN]>(), n2 in any::<[u8; NONCE_LEN]>()) {
        let old = Keyring::parse(K_OLD).unwrap();
        let both = Keyring::parse(&format!("{K_NEW},{K_OLD}")).unwrap();
        let sealed = old.seal(&aad, &plain, n1);
        prop_assert!(both.needs_reseal(&sealed));
        let moved = both.seal(&aad, &both.open(&aad, &sealed).unwrap(), n2);
        prop_assert!(!both.needs_reseal(&moved));
        prop_assert_eq!(Keyring::parse(K_NEW).unwrap().open(&aad, &moved).unwrap(), plain);
        prop_assert!(old.open(&aad, &moved).is_err());
    }
}

const K_OLD: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K_NEW: &str = "HxwdHhscGRoXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
