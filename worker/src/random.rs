//! Randomness for ids, states, nonces and secrets, from the runtime's CSPRNG.

pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // crypto.getRandomValues does not fail for buffers this small.
    getrandom::getrandom(&mut buf).expect("crypto.getRandomValues");
    buf
}
