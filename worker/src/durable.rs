//! Calling a Durable Object: a JSON command to the object of a name, and its JSON answer.

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Env, Method, Request, RequestInit};

/// Sends `command` to the object named `name` in the namespace bound as `binding`; answers what
/// it answered.
pub async fn call<C: Serialize, A: DeserializeOwned>(
    env: &Env,
    binding: &str,
    name: &str,
    command: &C,
) -> worker::Result<A> {
    let stub = env
        .durable_object(binding)?
        .id_from_name(name)?
        .get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(serde_json::to_string(command)?.into()));
    // The host is never resolved: the stub routes the request to the object.
    let req = Request::new_with_init(&format!("https://{binding}/"), &init)?;
    stub.fetch_with_request(req).await?.json().await
}

/// An error inside an object (configuration, store): it fails the call (the caller answers 500).
pub fn object_error(e: keaplink_core::ApiError) -> worker::Error {
    worker::Error::RustError(e.to_string())
}
