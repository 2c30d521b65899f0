//! Randomness for ids, states, nonces and secrets, from the runtime's CSPRNG.

pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // crypto.getRandomValues does not fail for buffers this small.
    if getrandom::getrandom(&mut buf).is_err() {
        panic!("crypto.getRandomValues failed");
    }
    buf
}
