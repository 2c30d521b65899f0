//! What the runtime stores for us, as JSON text: `keaplink-js-json` (its own crate so that its
//! reading of what earlier releases stored is tested in Node, apart from the Worker).

pub use keaplink_js_json::{from_js, legacy_json, where_broken};
