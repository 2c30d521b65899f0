//! Prints keaplink's OpenAPI document: `cargo run -p keaplink-openapi > docs/openapi.json`.

fn main() {
    print!("{}", keaplink_openapi::to_json());
}
