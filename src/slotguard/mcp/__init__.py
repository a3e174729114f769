"""The MCP server for AI agents (API.md §11): a thin adapter over the public HTTP API.

Every tool calls the API through ``slotguard.client.AsyncClient`` with the caller's own key,
so scopes, the business fence, rate limits, idempotency and the audit log are those of the
HTTP API, and no scheduling rule lives here. Needs the ``mcp`` extra
(``pip install 'slotguard[mcp]'``); nothing in the core imports this package.
"""
