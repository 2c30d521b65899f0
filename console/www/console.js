// Loads the console's wasm and hands it the page: everything the console shows and does is in
// Rust (console/src); this file only starts it.
import init, { start } from "./keaplink_console.js";

await init();
start(document.getElementById("app"), document.getElementById("notice"));
