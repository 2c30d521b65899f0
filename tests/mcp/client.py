"""A real MCP client (the MCP Python SDK) against keaplink's MCP server, for tests/e2e/mcp.test.mjs.

The SDK's OAuthClientProvider does discovery (protected resource and authorization server
metadata), dynamic client registration and PKCE. The browser is the test's: the authorization
URL is printed as a JSON line ({"authorize": url}) and the URL the browser was sent back to is
read from stdin. Then the script lists the tools and calls those given (a JSON list of
[name, arguments] in argv[3]) and prints each answer as a JSON line. It prints the tokens it got
last ({"tokens": ...}) so the test can present them where they must be refused.

    client.py <mcp url> <scope> '<[["search_contacts", {"email": "..."}], ...]>'
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken


def say(obj):
    print(json.dumps(obj), flush=True)


class Memory(TokenStorage):
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull):
        self.client = client_info


async def main():
    url, scope, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    storage = Memory()

    async def redirect_handler(authorization_url: str):
        say({"authorize": authorization_url})

    async def callback_handler():
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        q = parse_qs(urlparse(line.strip()).query)
        if "code" not in q:
            raise RuntimeError(f"no code: {q.get('error')}")
        return AuthorizationCodeResult(code=q["code"][0], state=q.get("state", [None])[0], iss=q.get("iss", [None])[0])

    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="keaplink e2e assistant",
            redirect_uris=["http://127.0.0.1:8765/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            scope=scope or None,
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            say({"protocol_version": client.protocol_version})
            tools = await client.list_tools()
            say({"tools": [t.name for t in tools.tools]})
            for name, args in calls:
                try:
                    r = await client.call_tool(name, args)
                    text = "".join(c.text for c in r.content if getattr(c, "type", "") == "text")
                    is_error = getattr(r, "is_error", None)
                    if is_error is None:
                        is_error = getattr(r, "isError", False)
                    say({"call": name, "is_error": bool(is_error), "text": text})
                except Exception as e:  # a protocol error: the test says what it expected
                    say({"call": name, "protocol_error": str(e)})
    t = storage.tokens
    say({"tokens": {"access_token": t.access_token, "refresh_token": t.refresh_token, "scope": t.scope},
         "client_id": storage.client.client_id})


asyncio.run(main())
