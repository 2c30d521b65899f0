#!/usr/bin/env python3
"""Where a wasm's bytes go: sections (raw and deflate), and code bytes by crate / area.

Usage: scripts/size-attribution.py FILE.wasm [--detail] [--top N]

FILE must keep its name section with v0-mangled names (generic parameters spelled out), e.g.
  cd worker && KEAPLINK_WASM_NAMES=1 RUSTFLAGS=-Csymbol-mangling-version=v0 worker-build --release
or, without touching worker/build (what bench/run.mjs does; the module before wasm-bindgen and
wasm-opt), in a target folder of its own:
  KEAPLINK_WASM_NAMES=1 RUSTFLAGS=-Csymbol-mangling-version=v0 CARGO_TARGET_DIR=target/size-names \
    cargo build --release --target wasm32-unknown-unknown -p keaplink-worker
(v0 mangling changes symbol names only: the code section is the same size within ~0.01 %).
docs/wasm-size.md reads the tables this prints.

Each function body is charged to one area; first match wins:
  1. js_sys::futures::future_to_promise::<F>: an async body F that LLVM inlined into the JS
     promise adapter; charged to F's crate and module (keaplink_worker's entry points).
  2. a serde trait impl or visitor whose name names a keaplink type: 'serde derive', per type.
  3. the first crate named other than core/alloc/std (so <core::iter::GenericShunt<worker::..>>
     is worker's); keaplink crates per module; ICU4X / url / idna together.
  4. what remains of core/alloc/std: core::fmt (formatting) or the rest.
Data segments carry no crate names; the data section is reported whole.
"""
import collections
import re
import sys
import zlib


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


SECTION = {1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
           7: "export", 8: "start", 9: "elem", 10: "code", 11: "data", 12: "datacount"}


def parse(path):
    """Sections [(name, raw, deflated)], function bodies [(name, size)]."""
    b = open(path, "rb").read()
    i, imports, sections, bodies, names = 8, 0, [], [], {}
    while i < len(b):
        sid = b[i]
        n, i = leb(b, i + 1)
        end = i + n
        label = SECTION.get(sid, str(sid))
        if sid == 0:
            ln, j = leb(b, i)
            label = 'custom "%s"' % b[j:j + ln].decode()
            if label == 'custom "name"':
                j += ln
                while j < end:
                    sub = b[j]
                    sl, j = leb(b, j + 1)
                    if sub == 1:  # function names
                        c, k = leb(b, j)
                        for _ in range(c):
                            idx, k = leb(b, k)
                            ln2, k = leb(b, k)
                            names[idx] = b[k:k + ln2].decode("utf8", "replace")
                            k += ln2
                    j += sl
        elif sid == 2:  # imports: function imports shift the function index space
            c, j = leb(b, i)
            for _ in range(c):
                for _ in range(2):
                    ln, j = leb(b, j)
                    j += ln
                kind = b[j]
                j += 1
                if kind == 0:
                    _, j = leb(b, j)
                    imports += 1
                elif kind == 1:
                    j += 1
                    flags, j = leb(b, j)
                    _, j = leb(b, j)
                    if flags & 1:
                        _, j = leb(b, j)
                elif kind == 2:
                    flags, j = leb(b, j)
                    _, j = leb(b, j)
                    if flags & 1:
                        _, j = leb(b, j)
                elif kind == 3:
                    j += 2
                elif kind == 4:
                    j += 1
                    _, j = leb(b, j)
        elif sid == 10:
            c, j = leb(b, i)
            for k in range(c):
                ln, j2 = leb(b, j)
                bodies.append((imports + k, ln + (j2 - j)))
                j = j2 + ln
        sections.append((label, n, len(zlib.compress(b[i:end], 9))))
        i = end
    return sections, [(names.get(f, "func[%d]" % f), s) for f, s in bodies]


CRATE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[[0-9a-f]{8,}\]((?:::[A-Za-z_][A-Za-z0-9_]*)*)")
SERDE_TRAIT = re.compile(
    r"serde_core\[[0-9a-f]+\]::(de|ser)::(Deserialize|Serialize|Visitor|DeserializeSeed)"
    r"|__Visitor|__FieldVisitor|__Field\b")
KEAP_TYPE = re.compile(r"keaplink_(core|api|worker)\[[0-9a-f]+\]((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
AREAS = [
    ("url + idna (+ ICU4X)", "url idna idna_adapter form_urlencoded percent_encoding smallvec"
     " utf8_iter zerovec zerofrom yoke writeable potential_utf tinystr litemap"),
    ("aes-gcm (aes, ghash, ctr, polyval)", "aes aes_gcm ghash ctr polyval universal_hash cipher"
     " aead inout"),
    ("sha2 + hmac + digest", "sha2 hmac digest block_buffer subtle crypto_common generic_array"
     " typenum zeroize"),
    ("wasm-bindgen / js-sys / web-sys glue", "js_sys wasm_bindgen web_sys wasm_bindgen_futures"),
    ("worker (workers-rs) + worker-sys", "worker worker_sys wasm_streams matchit"
     " serde_urlencoded chrono"),
    ("futures", "futures_util futures_core futures_channel futures_task futures_sink slab"
     " pin_project"),
    ("serde (private: Content buffering, std impls)", "serde serde_core"),
    ("serde_json (+ itoa, zmij)", "serde_json itoa zmij ryu memchr"),
    ("serde_wasm_bindgen", "serde_wasm_bindgen"),
    ("jsonwebtoken (+ signature)", "jsonwebtoken signature"),
    ("time", "time time_core powerfmt deranged num_conv"),
    ("allocator (talc) + hashbrown", "talc dlmalloc hashbrown allocator_api2 lock_api __rustc"),
    ("base64", "base64"),
    ("getrandom", "getrandom"),
]
AREA = {c: a for a, cs in AREAS for c in cs.split()}


def classify(name):
    m = re.match(r"js_sys\[[0-9a-f]+\]::futures::future_to_promise::<(.*)", name)
    if m:
        name = m.group(1)
    if SERDE_TRAIT.search(name) and KEAP_TYPE.search(name):
        t = KEAP_TYPE.search(name)
        return "serde derive (keaplink types)", "keaplink_" + t.group(1) + t.group(2)
    crates = CRATE.findall(name)
    for c, path in crates:
        if c in ("core", "alloc", "std"):
            continue
        if c.startswith("keaplink_"):
            mod = path.split("::")[1] if path.count("::") >= 1 else ""
            if mod.startswith("_worker_"):
                mod = "(entry points: fetch, queue, scheduled, with what LLVM inlined)"
            return c, "%s::%s" % (c, mod)
        if c.startswith("icu_"):
            return "url + idna (+ ICU4X)", c
        return AREA.get(c, c), c
    if re.search(r"core\[[0-9a-f]+\]::fmt|fmt::(Display|Debug|Write)|Formatter", name):
        return "core::fmt", "core::fmt"
    return "core / alloc / std (rest, incl. wasm-bindgen shims)", crates[0][0] if crates else "-"


def main():
    path = sys.argv[1]
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 30
    sections, bodies = parse(path)
    print("| section | raw B | deflate -9 B |\n|---|---:|---:|")
    for label, raw, dz in sections:
        print("| %s | %s | %s |" % (label, format(raw, ","), format(dz, ",")))
    code = sum(s for _, s in bodies)
    agg, sub, cnt = collections.Counter(), collections.Counter(), collections.Counter()
    for n, s in bodies:
        area, key = classify(n)
        agg[area] += s
        sub[(area, key)] += s
        cnt[area] += 1
    print("\n| area | code B | share of code | functions |\n|---|---:|---:|---:|")
    for area, v in agg.most_common():
        print("| %s | %s | %.1f%% | %d |" % (area, format(v, ","), 100 * v / code, cnt[area]))
    print("| **code section, all** | **%s** | 100%% | %d |" % (format(code, ","), len(bodies)))
    if "--detail" in sys.argv:
        for want in ("serde derive (keaplink types)", "keaplink_worker", "keaplink_core"):
            print("\n| %s | code B |\n|---|---:|" % want)
            for (area, key), v in sorted(sub.items(), key=lambda x: -x[1]):
                if area == want and v >= 300:
                    print("| %s | %s |" % (key, format(v, ",")))
    print("\n| # | code B | function |\n|---:|---:|---|")
    strip = lambda n: re.sub(r"\[[0-9a-f]+\]", "", n)
    for k, (n, s) in enumerate(sorted(bodies, key=lambda x: -x[1])[:top], 1):
        print("| %d | %s | `%s` |" % (k, format(s, ","), strip(n)[:160].replace("|", "\\|")))


if __name__ == "__main__":
    main()
