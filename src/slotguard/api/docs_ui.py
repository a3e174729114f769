"""`/docs` (Swagger UI) and `/redoc` (ReDoc), served from the package, never from a CDN.

The UI files are pinned copies from the npm registry (static/docs/ASSETS.json, refreshed by
scripts/vendor_docs_assets.py, which also empties the one internet URL ReDoc's bundle would
load, its footer logo). The pages carry a Content-Security-Policy that only allows this
server as a source, so a request a bundled UI might still make on its own would never leave
the machine: the pages work the same without internet.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(__file__).parent / "static" / "docs"
ASSETS_URL = "/docs-assets"

# Inline styles are needed by both UIs (styled-components, React style props); scripts only
# from this server; ReDoc's search runs in a worker built from a blob: URL.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _page(title: str, head: str, body: str) -> HTMLResponse:
    html = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def install(app: FastAPI) -> None:
    """Mount the assets and add the two pages (the app is built with docs_url=None)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    def urls(request: Request) -> tuple[str, str]:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return escape(f"{root}{ASSETS_URL}"), escape(f"{root}{app.openapi_url}")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        assets, spec = urls(request)
        return _page(
            f"{app.title} — API (Swagger UI)",
            f'<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">\n'
            f'<link rel="stylesheet" href="{assets}/swagger-ui.css">\n',
            f'<div id="swagger-ui" data-openapi-url="{spec}"></div>\n'
            f'<script src="{assets}/swagger-ui-bundle.js"></script>\n'
            f'<script src="{assets}/swagger-init.js"></script>\n',
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        assets, spec = urls(request)
        return _page(
            f"{app.title} — API (ReDoc)",
            f'<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">\n'
            "<style>body { margin: 0; padding: 0; }</style>\n",
            f'<redoc spec-url="{spec}"></redoc>\n'
            f'<script src="{assets}/redoc.standalone.js"></script>\n',
        )
