//! Link flags for the shipped Worker wasm: release builds leave out the function names.

fn main() {
    // The wasm name section (function names) was about 60 KB of the ~430 KB gzip the Worker
    // weighed with it, and nothing at run time reads it. worker-build always runs wasm-opt with
    // --debuginfo, which keeps whatever names the linker wrote, so they are dropped here, at the
    // link. target_features stays: wasm-bindgen reads it to choose its multi-value glue.
    // KEAPLINK_WASM_NAMES=1 keeps the names, for size attribution (twiggy; see BENCHMARKS.md).
    println!("cargo:rerun-if-env-changed=KEAPLINK_WASM_NAMES");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let keep_names = std::env::var_os("KEAPLINK_WASM_NAMES").is_some_and(|v| v == "1");
    if wasm && release && !keep_names {
        println!("cargo:rustc-link-arg-cdylib=--strip-all");
        println!("cargo:rustc-link-arg-cdylib=--keep-section=target_features");
    }
}
