//! Randomness for ids, states, nonces and secrets, from the runtime's CSPRNG.

pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // crypto.getRandomValues does not fail for buffers this small.
    if getrandom::getrandom(&mut buf).is_err() {
        panic!("crypto.getRandomValues failed");
    }
    buf
}

/// An id for a request's log line when Cloudflare sent no ray id (local runs): a random number
/// drawn once per isolate, then counted up, so a request costs no call into the runtime's CSPRNG.
/// Unique within the isolate; isolates start from independent random points. Not a secret.
pub fn request_id() -> u64 {
    thread_local! {
        static NEXT: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    }
    NEXT.with(|n| {
        let id = n.get().unwrap_or_else(|| u64::from_le_bytes(bytes()));
        n.set(Some(id.wrapping_add(1)));
        id
    })
}
