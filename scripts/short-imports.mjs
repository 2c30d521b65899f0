#!/usr/bin/env node
// Shortens the names wasm-bindgen gives a module's imports (`__wbg_fetch_21015a0a4570ab44`): each
// carries 16 hex digits of hash, written twice (the wasm's import section and the JS glue's
// import object), and random hex is what gzip cannot shrink (about 16 B gzip per import, 1.5 KB
// of the widget's 40 KB budget). The name is kept without its hash (`fetch`; `new`, `new2`, … where
// two share one), so a stack trace still reads. Nothing else changes: the same imports, in the
// same order, bound to the same functions.
//
//   node scripts/short-imports.mjs <module>_bg.wasm <module>.js
//
// Run after wasm-opt and esbuild (scripts/build). It fails if a name is not found exactly once in
// the glue, so a wasm-bindgen that writes its glue differently stops the build instead of
// shipping a module whose imports do not resolve.
import { readFileSync, writeFileSync } from "node:fs";
import { basename } from "node:path";

const [wasmPath, jsPath] = process.argv.slice(2);
const wasm = readFileSync(wasmPath);
let js = readFileSync(jsPath, "utf8");
// The glue names its module after the wasm's file (`./keap_link_wasm_bg.js`).
const glueModule = `./${basename(wasmPath).replace(/\.wasm$/, ".js")}`;

function leb(buf, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = buf[at++];
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (b < 0x80) return [value, at];
  }
}
function encodeLeb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}
const str = (s) => Buffer.concat([encodeLeb(Buffer.byteLength(s)), Buffer.from(s)]);

const parts = [wasm.subarray(0, 8)];
let at = 8;
const renamed = new Map();
const taken = new Set();
const finalNames = [];
while (at < wasm.length) {
  const id = wasm[at];
  const [size, body] = leb(wasm, at + 1);
  const end = body + size;
  if (id !== 2) {
    parts.push(wasm.subarray(at, end));
    at = end;
    continue;
  }
  let [count, p] = leb(wasm, body);
  const entries = [encodeLeb(count)];
  while (count--) {
    let len;
    [len, p] = leb(wasm, p);
    const module = wasm.toString("utf8", p, p + len);
    p += len;
    [len, p] = leb(wasm, p);
    let name = wasm.toString("utf8", p, p + len);
    p += len;
    // The import's description, copied as it is: its length depends on its kind.
    const descStart = p;
    const kind = wasm[p++];
    if (kind === 0) [, p] = leb(wasm, p); // function: type index
    else if (kind === 1 || kind === 2) {
      if (kind === 1) p++; // table: element type
      const flags = wasm[p++];
      [, p] = leb(wasm, p);
      if (flags & 1) [, p] = leb(wasm, p);
    } else if (kind === 3) p += 2; // global: value type, mutability
    else if (kind === 4) [, p] = leb(wasm, p + 1); // tag: attribute, type index
    else throw new Error(`short-imports: unknown import kind ${kind}`);
    const m = /^__wbg_(.+)_[0-9a-f]{16}$/.exec(name);
    if (module === glueModule && m) {
      let short = m[1];
      for (let n = 2; taken.has(short); n++) short = `${m[1]}${n}`;
      taken.add(short);
      renamed.set(name, short);
      name = short;
    }
    if (module === glueModule) finalNames.push(name);
    entries.push(str(module), str(name), wasm.subarray(descStart, p));
  }
  if (p !== end) throw new Error("short-imports: the import section did not parse to its end");
  const payload = Buffer.concat(entries);
  parts.push(Buffer.from([2]), encodeLeb(payload.length), payload);
  at = end;
}

if (new Set(finalNames).size !== finalNames.length) throw new Error("short-imports: two imports would share a name");
for (const [long, short] of renamed) {
  const found = js.split(long).length - 1;
  if (found !== 1) throw new Error(`short-imports: ${long} is in the glue ${found} times, not once`);
  js = js.replace(long, short);
}
writeFileSync(wasmPath, Buffer.concat(parts));
writeFileSync(jsPath, js);
console.log(`short-imports: ${renamed.size} imports renamed in ${basename(wasmPath)} and ${basename(jsPath)}`);
