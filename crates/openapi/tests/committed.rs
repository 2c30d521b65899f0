//! The committed `docs/openapi.json` is exactly what this crate generates: a change to the types,
//! the error table or the operations fails here until the document is regenerated.

use std::path::Path;

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = keaplink_openapi::to_json();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "its length".to_owned(), |n| format!("line {}", n + 1));
        panic!(
            "docs/openapi.json differs from the generated document (first at {line}). Regenerate it:\n\n    cargo run -q -p keaplink-openapi > docs/openapi.json\n"
        );
    }
}

/// The schemas are for this crate only: the Worker and the widget ship their wasm over the wire
/// and must never turn on keaplink-api's `openapi` feature (nor may the core, which both use).
#[test]
fn the_wasm_crates_leave_the_openapi_feature_off() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for manifest in [
        "worker/Cargo.toml",
        "web/Cargo.toml",
        "crates/core/Cargo.toml",
    ] {
        let text = std::fs::read_to_string(root.join(manifest)).expect(manifest);
        for line in text
            .lines()
            .filter(|l| l.contains("keaplink-api") || l.contains("utoipa"))
        {
            assert!(
                !line.contains("openapi") && !line.contains("utoipa"),
                "{manifest}: {line}"
            );
        }
    }
}
