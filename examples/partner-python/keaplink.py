"""A partner back-end's touch points with keaplink, in Python 3 with PyJWT.

1. mint the session JWT the widget presents for the signed-in user (serve it from your own
   authenticated endpoint and point the widget's `session-url` at it);
2. call Keap's REST API as one of your users, through keaplink (from a cron, a queue, a
   Lambda): keaplink adds the token, heals a stale one and keeps you inside Keap's quota;
3. or get a fresh Keap access token for one of your users and call Keap yourself;
4. verify a webhook keaplink sent you;
5. subscribe a user's link to Keap's events (contact.add, invoice.add, ...), and receive them:
   signed like every webhook, deduplicated by event id.

Run: KEAPLINK_URL=... KEAPLINK_PARTNER_ID=... KEAPLINK_SESSION_SECRET=... KEAPLINK_API_KEY=... \\
     python keaplink.py <your user id>
"""

import hashlib
import hmac
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt  # PyJWT

URL = os.environ.get("KEAPLINK_URL", "")
PARTNER_ID = os.environ.get("KEAPLINK_PARTNER_ID", "")
SESSION_SECRET = os.environ.get("KEAPLINK_SESSION_SECRET", "")
API_KEY = os.environ.get("KEAPLINK_API_KEY", "")

# The environment variables this example reads, and what each holds.
SETTINGS = {
    "KEAPLINK_URL": "keaplink's origin (PUBLIC_URL), e.g. http://127.0.0.1:8787",
    "KEAPLINK_PARTNER_ID": "your partner id, e.g. demo",
    "KEAPLINK_SESSION_SECRET": "your partner's session_secret (shown once, when the partner was registered or its secrets rotated)",
    "KEAPLINK_API_KEY": "your partner's api_key, klk.<partner>.<random> (shown once, as the session secret)",
}


def missing_settings(names=None) -> list[str]:
    """The names (default: all of SETTINGS) that the environment leaves unset or empty."""
    return [n for n in (names or SETTINGS) if not os.environ.get(n)]


def _need(*names: str) -> None:
    """Raises, naming each variable of names that is not set (before a call keaplink would refuse)."""
    missing = missing_settings(list(names))
    if missing:
        raise RuntimeError("set " + " and ".join(f"{n} ({SETTINGS[n]})" for n in missing))


def session_jwt(user_id: str, ttl_secs: int = 600) -> str:
    """1. The widget's session: HS256, at most an hour, audience "keaplink"."""
    _need("KEAPLINK_PARTNER_ID", "KEAPLINK_SESSION_SECRET")
    now = int(time.time())
    claims = {"iss": PARTNER_ID, "sub": user_id, "aud": "keaplink", "iat": now, "exp": now + ttl_secs}
    return jwt.encode(claims, SESSION_SECRET, algorithm="HS256")


class KeaplinkError(Exception):
    """keaplink's own refusal (not Keap's answer): `code`, and `retry_after` seconds for the 429s."""

    def __init__(self, code: str, message: str, retry_after: int | None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry_after = retry_after


def call_keap(user_id: str, method: str, path: str, body=None, keap_app: str | None = None):
    """2. Calls Keap's REST API as user_id (path like "/crm/rest/v2/contacts?page_size=10").

    Returns Keap's own (status, body, headers), whatever its status. Raises KeaplinkError when
    keaplink answered itself: needs_reauth (409: ask the user to reconnect), keap_quota and
    rate_limited (429: wait retry_after seconds), no_connection (404), ambiguous_connection
    (409: name keap_app), invalid_keap_path (400), keap_error / keap_timeout (502 / 504).
    """
    _need("KEAPLINK_URL", "KEAPLINK_API_KEY")
    headers = {
        "authorization": f"Bearer {API_KEY}",
        # Header values travel as bytes: a user id outside Latin-1 goes as its UTF-8 bytes.
        "keaplink-user": user_id.encode("utf-8").decode("latin-1"),
    }
    if keap_app:
        headers["keaplink-app"] = keap_app
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    req = urllib.request.Request(f"{URL}/v1/keap{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            status, raw, answer_headers = res.status, res.read(), res.headers
    except urllib.error.HTTPError as e:
        status, raw, answer_headers = e.code, e.read(), e.headers
    parsed = json.loads(raw) if raw and "json" in (answer_headers.get("content-type") or "") else raw
    if answer_headers.get("keaplink-error"):
        retry = answer_headers.get("retry-after")
        err = parsed["error"]
        raise KeaplinkError(err["code"], err["message"], int(retry) if retry else None)
    return status, parsed, answer_headers


def keap_access_token(user_id: str, keap_app: str | None = None) -> dict:
    """3. {"access_token", "expires_at", "keap_app"} for user_id, valid for at least 60 s."""
    _need("KEAPLINK_URL", "KEAPLINK_API_KEY")
    body = {"user": user_id} if keap_app is None else {"user": user_id, "keap_app": keap_app}
    req = urllib.request.Request(
        f"{URL}/v1/token",
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {API_KEY}", "content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as res:
            return json.load(res)
    except urllib.error.HTTPError as e:
        # needs_reauth (409): ask the user to reconnect; rate_limited / keap_throttled (429):
        # wait retry-after seconds.
        err = json.load(e)["error"]
        retry = e.headers.get("retry-after")
        raise KeaplinkError(err["code"], err["message"], int(retry) if retry else None) from None


def verify_webhook(raw_body: bytes, signature_header: str, tolerance_secs: int = 300) -> bool:
    """4. Checks `keaplink-signature: t=<unix>,v1=<hex>` over b"<t>.<raw body>"."""
    m = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", signature_header or "")
    if not m:
        return False
    _need("KEAPLINK_SESSION_SECRET")
    t, v1 = m.group(1), m.group(2)
    if abs(time.time() - int(t)) > tolerance_secs:
        return False
    key = hmac.new(SESSION_SECRET.encode(), b"keaplink-webhook-v1", hashlib.sha256).digest()
    expected = hmac.new(key, t.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1)


def subscribe_keap_events(connection_id: str, event_keys: list[str], hydrate: bool = False) -> dict:
    """5a. The Keap events a link should deliver; keaplink subscribes at Keap with a hook URL of
    its own and keeps the hooks alive. An empty list removes them all. Answers
    {"hooks": [{"event_key", "status"}], "hydrate"}."""
    _need("KEAPLINK_URL", "KEAPLINK_API_KEY")
    req = urllib.request.Request(
        f"{URL}/v1/connections/{urllib.parse.quote(connection_id, safe='')}/hooks",
        data=json.dumps({"event_keys": event_keys, "hydrate": hydrate}).encode(),
        headers={"authorization": f"Bearer {API_KEY}", "content-type": "application/json"},
        method="PUT",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return json.load(res)
    except urllib.error.HTTPError as e:
        err = json.load(e)["error"]
        raise KeaplinkError(err["code"], err["message"], None) from None


def receive_webhook(raw_body: bytes, headers: dict, seen: set, on_keap_event=None, on_connection_event=None) -> int:
    """5b. A webhook receiver: the status to answer (2xx: done; anything else: keaplink retries
    for a day). A Keap event arrives as `keap.<event_key>`; `seen` holds the event ids handled
    (use your database), so a retried delivery is handled once. `on_keap_event(event)` reads
    event["keap_event"]: "object_keys", and with hydrate "objects" and "unread" ({"id", "code"}:
    needs_reauth when the link needs its user, not_found, keap_quota, ...)."""
    if not verify_webhook(raw_body, headers.get("keaplink-signature", "")):
        return 401
    event = json.loads(raw_body)
    if event["id"] in seen:
        return 200
    handler = on_keap_event if event["type"].startswith("keap.") else on_connection_event
    if handler:
        handler(event)
    seen.add(event["id"])
    return 200


if __name__ == "__main__":
    unset = missing_settings()
    if unset:
        print("keaplink example: these environment variables are not set:", file=sys.stderr)
        for n in unset:
            print(f"  {n}: {SETTINGS[n]}", file=sys.stderr)
        print("Against ./scripts/dev, the README's Quick start exports them all.", file=sys.stderr)
        sys.exit(1)
    user = sys.argv[1] if len(sys.argv) > 1 else "user-1"
    token = session_jwt(user)
    print(f"session JWT for {user}: {len(token)} chars (hand it to the widget; never log it)")
    try:
        status, who, headers = call_keap(user, "GET", "/crm/rest/v2/oauth/connect/userinfo")
        left = headers.get("x-keap-product-quota-available")
        print(f"through keaplink: Keap answered {status}, tenant {who['tenant_id']}, {left} calls left today")
        t = keap_access_token(user)
        print(f"keap_app {t['keap_app']}, access token {len(t['access_token'])} chars, expires {t['expires_at']}")
    except KeaplinkError as e:
        print(f"keaplink said {e.code}")
        sys.exit(2)
