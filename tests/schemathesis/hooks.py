"""schemathesis hooks for keaplink (loaded by schemathesis.toml; run by run.mjs).

Gives generated requests the ids that exist (the run's own link and user), so operations are
exercised past their 404s, and records every answer in the harness's transcript format, so the
contract check (tests/checks/contract.test.mjs) holds schemathesis's answers to the document too.
"""

import itertools
import json
import os
from urllib.parse import urlsplit

import schemathesis
from schemathesis.core.parameters import EncodedPath

CONNECTION_ID = os.environ["KEAPLINK_CONNECTION_ID"]
USER = os.environ["KEAPLINK_USER"]
PARTNER = os.environ["KEAPLINK_PARTNER"]
REPAIR_TOKEN = os.environ.get("KEAPLINK_REPAIR_TOKEN")
ORIGIN = os.environ["KEAPLINK_ORIGIN"]
TRANSCRIPT_FILE = os.environ.get("KEAPLINK_TRANSCRIPT_FILE")
# Paths the sandbox's Keap answers, per method, for the proxy's `{path}` (it spans segments, so it
# goes out unencoded: EncodedPath is not quoted again).
KEAP_PATHS = {
    "GET": ["crm/rest/v2/contacts", "crm/rest/v1/contacts", "crm/rest/v2/businessProfile", "crm/rest/v2/contacts/1"],
    "POST": ["crm/rest/v2/contacts", "crm/rest/v1/contacts"],
    "PATCH": ["crm/rest/v2/contacts/1"],
    "DELETE": ["crm/rest/v2/contacts/999999"],
    "PUT": ["crm/rest/v2/contacts/1"],
}
# A well-formed id that names nothing, for the cases that must not touch the run's own records.
NO_SUCH_CONNECTION = "AAAAAAAAAAAAAAAAAAAAAA"

# Every other generated case uses the real id: half explore, half reach the handler.
_turn = itertools.count()


@schemathesis.hook
def before_call(ctx, case, kwargs):
    # Here rather than in map_* hooks: every phase's cases pass here (the coverage phase's, and
    # those built from ids schemathesis saw in answers, skip the map_* hooks).
    method = case.operation.method.upper()
    path = case.operation.path
    params = case.path_parameters if case.path_parameters is not None else {}
    connection_op = path.startswith(("/v1/connections/", "/v1/me/connections/"))
    if method == "DELETE":
        # A DELETE of the run's own link would turn every later case into a 404.
        if params.get("id") == CONNECTION_ID:
            params["id"] = NO_SUCH_CONNECTION
    elif "id" in params and connection_op and next(_turn) % 2 == 0:
        params["id"] = CONNECTION_ID
    # Nor may a PUT (rotate_secrets) or DELETE touch the run's partner: its key would die.
    if method != "GET" and params.get("partner_id") == PARTNER:
        params["partner_id"] = PARTNER + "-other"
    if REPAIR_TOKEN and method == "GET" and "token" in params and next(_turn) % 2 == 0:
        params["token"] = REPAIR_TOKEN
    if path == "/v1/keap/{path}" and next(_turn) % 2 == 0:
        choices = KEAP_PATHS[method]
        params["path"] = EncodedPath(choices[next(_turn) % len(choices)])
    if case.path_parameters is not None:
        case.path_parameters = params
    if case.headers is not None and "keaplink-user" in case.headers and next(_turn) % 2 == 0:
        case.headers["keaplink-user"] = USER
    # The widget's endpoints as a browser calls them: from the partner's allowed origin (the
    # CORS grant, and preflights that succeed), half the time.
    if path.startswith("/v1/me/") and next(_turn) % 2 == 0:
        case.headers = {**(case.headers or {}), "origin": ORIGIN}


@schemathesis.hook
def after_call(ctx, case, response):
    if not TRANSCRIPT_FILE:
        return
    record = {
        "kind": "answer",
        "source": "schemathesis",
        "method": response.request.method,
        "path": urlsplit(response.request.url).path,
        "status": response.status_code,
        "headers": {k.lower(): ", ".join(v) for k, v in response.headers.items()},
        "text": response.content.decode("utf-8", errors="replace"),
    }
    with open(TRANSCRIPT_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
