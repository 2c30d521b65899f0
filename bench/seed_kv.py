#!/usr/bin/env python3
"""Writes `keaplink-seed`'s lines (JSON: key, value, metadata?) straight into a stopped Worker's
local KV (Miniflare's SQLite table and blob files), in one transaction: the bench's way to a
million links (through Miniflare's KV API, 100k took 189 s).

    keaplink-seed <input.json | bench/seed_kv.py KV.sqlite BLOBS_DIR

Miniflare keeps each value as a blob file named by an id in the table. Values that several
entries share (the unreadable value every link that is not due gets, and those links' id-index
entries, marked unreadable too) are written once and shared: nothing reads them (the sweep decides
from metadata, which every entry has its own of). Every other value gets its own blob.
Prints what it wrote as one JSON line.
"""
import json
import os
import secrets
import sqlite3
import sys
import time

UNREADABLE = "unreadable: a sweep must decide from metadata alone"


def blob_id():
    # Miniflare's own form: 32 random bytes and a big-endian timestamp, hex.
    return secrets.token_bytes(32).hex() + int(time.time() * 1000).to_bytes(8, "big").hex()


def main():
    db_path, blobs = sys.argv[1], sys.argv[2]
    os.makedirs(blobs, exist_ok=True)

    def put_blob(value):
        bid = blob_id()
        with open(os.path.join(blobs, bid), "w", encoding="utf-8") as f:
            f.write(value)
        return bid

    shared = put_blob(UNREADABLE)
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA synchronous = OFF")
    rows, blobs_written, previous_idle = 0, 1, False
    batch = []
    for line in sys.stdin:
        e = json.loads(line)
        key, value, meta = e["key"], e["value"], e.get("metadata")
        if value == UNREADABLE:
            bid, previous_idle = shared, True
        elif previous_idle and key.startswith("i/"):
            # The id index of a link that is not due: as unreadable as its record.
            bid, previous_idle = shared, False
        else:
            bid, previous_idle = put_blob(value), False
            blobs_written += 1
        batch.append((key, bid, None, None if meta is None else json.dumps(meta, separators=(",", ":"))))
        if len(batch) >= 50_000:
            db.executemany("INSERT OR REPLACE INTO _mf_entries (key, blob_id, expiration, metadata) VALUES (?, ?, ?, ?)", batch)
            rows += len(batch)
            batch.clear()
    db.executemany("INSERT OR REPLACE INTO _mf_entries (key, blob_id, expiration, metadata) VALUES (?, ?, ?, ?)", batch)
    rows += len(batch)
    db.commit()
    db.close()
    print(json.dumps({"rows": rows, "blobs": blobs_written}))


if __name__ == "__main__":
    main()
