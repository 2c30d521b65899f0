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

CONNECTION_ID = os.environ["KEAPLINK_CONNECTION_ID"]
USER = os.environ["KEAPLINK_USER"]
PARTNER = os.environ["KEAPLINK_PARTNER"]
REPAIR_TOKEN = os.environ.get("KEAPLINK_REPAIR_TOKEN")
TRANSCRIPT_FILE = os.environ.get("KEAPLINK_TRANSCRIPT_FILE")
# A well-formed id that names nothing, for the cases that must not touch the run's own records.
NO_SUCH_CONNECTION = "AAAAAAAAAAAAAAAAAAAAAA"

# Every other generated case uses the real id: half explore, half reach the handler.
_turn = itertools.count()


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    op = ctx.operation
    if op is None or path_parameters is None:
        return path_parameters
    method = op.method.upper()
    connection_op = op.path.startswith(("/v1/connections/", "/v1/me/connections/"))
    if method == "DELETE":
        # schemathesis reuses ids it saw in answers: a DELETE (or a PUT with rotate_secrets) of
        # the run's own link or partner would end every later case in a 401 or 404.
        if path_parameters.get("id") == CONNECTION_ID:
            path_parameters["id"] = NO_SUCH_CONNECTION
    elif "id" in path_parameters and connection_op and next(_turn) % 2 == 0:
        path_parameters["id"] = CONNECTION_ID
    if method != "GET" and path_parameters.get("partner_id") == PARTNER:
        path_parameters["partner_id"] = PARTNER + "-other"
    if REPAIR_TOKEN and method == "GET" and "token" in path_parameters and next(_turn) % 2 == 0:
        path_parameters["token"] = REPAIR_TOKEN
    return path_parameters


@schemathesis.hook
def map_headers(ctx, headers):
    op = ctx.operation
    if op is None or headers is None or "keaplink-user" not in headers:
        return headers
    if next(_turn) % 2 == 0:
        headers["keaplink-user"] = USER
    return headers


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
