"""A partner back-end's three touch points with keaplink, in Python 3 with PyJWT.

1. mint the session JWT the widget presents for the signed-in user (serve it from your own
   authenticated endpoint and point the widget's `session-url` at it);
2. get a fresh Keap access token for one of your users (from a cron, a queue, a Lambda);
3. verify a webhook keaplink sent you.

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
import urllib.request

import jwt  # PyJWT

URL = os.environ.get("KEAPLINK_URL", "")
PARTNER_ID = os.environ.get("KEAPLINK_PARTNER_ID", "")
SESSION_SECRET = os.environ.get("KEAPLINK_SESSION_SECRET", "")
API_KEY = os.environ.get("KEAPLINK_API_KEY", "")


def session_jwt(user_id: str, ttl_secs: int = 600) -> str:
    """1. The widget's session: HS256, at most an hour, audience "keaplink"."""
    now = int(time.time())
    claims = {"iss": PARTNER_ID, "sub": user_id, "aud": "keaplink", "iat": now, "exp": now + ttl_secs}
    return jwt.encode(claims, SESSION_SECRET, algorithm="HS256")


class KeaplinkError(Exception):
    def __init__(self, code: str, message: str, retry_after: int | None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry_after = retry_after


def keap_access_token(user_id: str, keap_app: str | None = None) -> dict:
    """2. {"access_token", "expires_at", "keap_app"} for user_id, valid for at least 60 s."""
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
    """3. Checks `keaplink-signature: t=<unix>,v1=<hex>` over b"<t>.<raw body>"."""
    m = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", signature_header or "")
    if not m:
        return False
    t, v1 = m.group(1), m.group(2)
    if abs(time.time() - int(t)) > tolerance_secs:
        return False
    key = hmac.new(SESSION_SECRET.encode(), b"keaplink-webhook-v1", hashlib.sha256).digest()
    expected = hmac.new(key, t.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1)


if __name__ == "__main__":
    user = sys.argv[1] if len(sys.argv) > 1 else "user-1"
    token = session_jwt(user)
    print(f"session JWT for {user}: {len(token)} chars (hand it to the widget; never log it)")
    try:
        t = keap_access_token(user)
        print(f"keap_app {t['keap_app']}, access token {len(t['access_token'])} chars, expires {t['expires_at']}")
    except KeaplinkError as e:
        print(f"no token: {e.code}")
        sys.exit(2)
