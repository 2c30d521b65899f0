//! A stand-in Keap on loopback. Filled in by the edge-service issue.

fn main() {
    eprintln!("keaplink-sandbox: not built yet");
    std::process::exit(2);
}
