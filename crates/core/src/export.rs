//! Taking links out (`POST /v1/connections/export`): which links may go, the freeze that makes
//! the handed-out refresh token the live one, and what the partner gets.
//!
//! Keap rotates the refresh token on every refresh, so a token read while keaplink could still
//! refresh would be dead within hours. The link's guard therefore freezes the link (status
//! `exported`: never refreshed again, refused by `/v1/token` and the proxy) in the same turn in
//! which it reads the tokens.

use crate::clock::rfc3339;
use crate::connection::{ConnectionKey, ConnectionRecord};
use crate::error::{ApiError, ErrorCode};
use crate::ids::ConnectionId;
use crate::seal::Keyring;
use keaplink_api::{ConnectionStatus, ExportedLink, KeapUser};

/// Connection ids in one export.
pub const MAX_EXPORT_IDS: usize = 100;

/// The ids of an export request: 1 to 100, each one of ours (else 400 naming the rule), repeats
/// kept once in order.
pub fn read_ids(raw: &[String]) -> Result<Vec<ConnectionId>, ApiError> {
    if !(1..=MAX_EXPORT_IDS).contains(&raw.len()) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "connection_ids must hold 1 to 100 ids ({} sent).",
                raw.len()
            ),
        ));
    }
    let mut ids: Vec<ConnectionId> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let id = ConnectionId::parse(r).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidId,
                format!("connection_ids[{i}] is not a connection id."),
            )
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The link frozen for export, or why it cannot go: an exported link is not exported twice (its
/// tokens may already have been rotated by the partner).
pub fn freeze(record: &ConnectionRecord) -> Result<ConnectionRecord, ApiError> {
    match record.status {
        ConnectionStatus::Exported => Err(ApiError::new(
            ErrorCode::Exported,
            "This link was exported already; its tokens are the partner's now.",
        )),
        ConnectionStatus::Active | ConnectionStatus::NeedsReauth => Ok(ConnectionRecord {
            status: ConnectionStatus::Exported,
            ..record.clone()
        }),
    }
}

/// What the partner gets for a frozen link: the tokens it holds now.
pub fn handed_out(
    frozen: &ConnectionRecord,
    keys: &Keyring,
    key: &ConnectionKey,
) -> Result<ExportedLink, ApiError> {
    let t = frozen.open_tokens(keys, key).map_err(|e| {
        ApiError::internal(format!(
            "the connection's tokens do not open with TOKEN_KEYS ({e:?})"
        ))
    })?;
    Ok(ExportedLink {
        connection_id: frozen.id.as_str().to_owned(),
        user: frozen.user.as_str().to_owned(),
        keap_app: frozen.keap_app.as_str().to_owned(),
        keap_user: KeapUser {
            email: frozen.keap_email.clone(),
            name: frozen.keap_name.clone(),
        },
        access_token: t.access_token.expose().to_owned(),
        expires_at: rfc3339(frozen.access_expires_at),
        refresh_token: t.refresh_token.expose().to_owned(),
        refresh_expires_at: rfc3339(frozen.refresh_expires_at()),
    })
}

/// What `/v1/token` and the proxy answer for an exported link.
pub fn refused() -> ApiError {
    ApiError::new(
        ErrorCode::Exported,
        "This link was exported: keaplink no longer holds its tokens for use. Use the exported tokens, or delete the link once the cut-over is done.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::NewConnection;
    use crate::ids::{PartnerId, UserId};
    use crate::keap::{KeapApp, KeapIdentity};
    use crate::secret::Secret;

    fn keys() -> Keyring {
        Keyring::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap()
    }

    fn link() -> (ConnectionKey, ConnectionRecord) {
        let partner = PartnerId::parse("acme").unwrap();
        let user = UserId::parse("u1").unwrap();
        let key = ConnectionKey::new(&partner, &user, &KeapApp::parse("ab123").unwrap());
        let r = ConnectionRecord::create(
            NewConnection {
                key: &key,
                id: ConnectionId::from_random([1; 16]),
                user: &user,
                who: KeapIdentity {
                    email: "ann@ab123.example".into(),
                    name: "Ann".into(),
                    sub: None,
                    tenant_id: None,
                },
                app_name: None,
                access_token: Secret::new("AT"),
                refresh_token: Secret::new("RT"),
                expires_in: 3600,
                refresh_lifetime_secs: 100,
                now: 1000,
                nonce: [0; 12],
            },
            &keys(),
        );
        (key, r)
    }

    #[test]
    fn a_link_is_frozen_once_and_hands_out_the_tokens_it_holds() {
        let (key, r) = link();
        let frozen = freeze(&r).unwrap();
        assert_eq!(frozen.status, ConnectionStatus::Exported);
        assert_eq!(frozen.tokens, r.tokens, "nothing else changes");
        let out = handed_out(&frozen, &keys(), &key).unwrap();
        assert_eq!(
            (out.access_token.as_str(), out.refresh_token.as_str()),
            ("AT", "RT")
        );
        assert_eq!(out.refresh_expires_at, rfc3339(1100));
        assert!(!format!("{out:?}").contains("RT"), "Debug is redacted");
        assert_eq!(freeze(&frozen).unwrap_err().code, ErrorCode::Exported);
        // A link that needs its user can still be taken out (the partner may hold a newer token).
        let dead = r.refresh_refused(2000);
        assert_eq!(freeze(&dead).unwrap().status, ConnectionStatus::Exported);
    }

    #[test]
    fn ids_are_one_to_a_hundred_of_ours() {
        let id = ConnectionId::from_random([2; 16]).as_str().to_owned();
        assert_eq!(read_ids(&[id.clone(), id.clone()]).unwrap().len(), 1);
        assert_eq!(read_ids(&[]).unwrap_err().code, ErrorCode::InvalidRequest);
        assert_eq!(
            read_ids(&vec![id.clone(); 101]).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let e = read_ids(&[id, "../x".into()]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidId);
        assert!(e.message.contains("connection_ids[1]"));
    }
}
