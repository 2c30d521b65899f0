// bench/run.mjs's wasm probe: compiles and instantiates the Worker's wasm inside workerd, so the
// figure comes from the V8 that runs the Worker (Node's is older and cannot even compile it).
// workerd, like Cloudflare, refuses to compile wasm from bytes while serving, so the probe runs
// with workerd's unsafe-eval binding (UNSAFE_EVAL, set by bench/run.mjs); it compiles through
// the same path as a Worker's own wasm module.
// Every request appends a custom section carrying its own counter to the bytes: V8 reuses a
// compiled module for identical bytes, and a cold isolate never has one to reuse. The clock
// inside a Worker stands still while it computes, so bench/run.mjs times the requests from
// outside and subtracts /copy (which builds the bytes too, but compiles nothing).
import wasm from "./target.wasm";

const NAME = new TextEncoder().encode("keaplink-bench");

function uniqueBytes(counter) {
  const payload = new TextEncoder().encode(counter);
  const size = 1 + NAME.length + payload.length;
  if (size > 127 || NAME.length > 127) throw new Error("the probe's custom section must stay under 128 bytes");
  const out = new Uint8Array(wasm.byteLength + 2 + size);
  out.set(new Uint8Array(wasm), 0);
  let at = wasm.byteLength;
  out[at++] = 0; // custom section id
  out[at++] = size;
  out[at++] = NAME.length;
  out.set(NAME, at);
  out.set(payload, at + NAME.length);
  return out;
}

// Instantiation needs every import; their bodies never run (nothing is called), only their kinds matter.
function stubImports(module) {
  const imports = {};
  for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
    imports[from] ??= {};
    if (kind === "function") imports[from][name] = () => {};
    else if (kind === "tag") imports[from][name] = WebAssembly.JSTag;
    else throw new Error(`the probe cannot stub a ${kind} import (${from}.${name})`);
  }
  return imports;
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const bytes = uniqueBytes(url.searchParams.get("i") ?? "0");
    if (url.pathname === "/copy") return new Response(String(bytes.byteLength));
    const module = env.UNSAFE_EVAL.newWasmModule(bytes);
    if (url.pathname === "/compile") return new Response(String(WebAssembly.Module.exports(module).length));
    if (url.pathname === "/instantiate") {
      const instance = new WebAssembly.Instance(module, stubImports(module));
      return new Response(String(Object.keys(instance.exports).length));
    }
    return new Response("not found", { status: 404 });
  },
};
