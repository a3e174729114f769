"""The docs pages' assets: pinned copies in the package, served locally, never a CDN."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx

from slotguard.api.app import create_app
from slotguard.api.docs_ui import ASSETS_DIR
from slotguard.config import Settings

SRC = Path(__file__).resolve().parents[2] / "src" / "slotguard"
# A URL on a content-delivery network (or web fonts), in any of the project's own files.
CDN = re.compile(
    r"(https?:)?//[^\s\"'<>]*(cdn|jsdelivr|unpkg|fonts\.googleapis|fonts\.gstatic)", re.I
)


def manifest() -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads((ASSETS_DIR / "ASSETS.json").read_text())
    return data


def test_vendored_files_are_the_pinned_ones() -> None:
    m = manifest()
    assert set(m["packages"]) == {"swagger-ui-dist", "redoc"}
    for name, digest in m["files"].items():
        assert hashlib.sha256((ASSETS_DIR / name).read_bytes()).hexdigest() == digest, name


def test_no_cdn_in_the_project_sources() -> None:
    vendored = {ASSETS_DIR / name for name in manifest()["files"]}
    offenders = []
    for path in SRC.rglob("*"):
        if path.is_dir() or path in vendored or path.suffix in {".png", ".pyc"}:
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if CDN.search(line):
                offenders.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert offenders == []


def test_no_cdn_in_the_vendored_files() -> None:
    # ReDoc's footer logo came from cdn.redoc.ly; the vendoring script empties its source.
    offenders = [
        f"{name}: {m.group(0)[:80]}"
        for name in manifest()["files"]
        if not name.endswith((".png", ".LICENSE", ".NOTICE", ".txt"))
        for m in CDN.finditer((ASSETS_DIR / name).read_text(errors="replace"))
    ]
    assert offenders == []


async def test_pages_reference_only_this_server(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", embedded_worker=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for page in ("/docs", "/redoc"):
            r = await c.get(page)
            assert r.status_code == 200
            assert "default-src 'self'" in r.headers["content-security-policy"]
            refs = re.findall(r'(?:src|href|spec-url|data-openapi-url)="([^"]+)"', r.text)
            assert refs and all(ref.startswith("/") for ref in refs), refs
            for ref in refs:
                asset = await c.get(ref)
                assert asset.status_code == 200, ref
    # Behind a proxy that mounts the API under a prefix, the links follow it.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, root_path="/sched"), base_url="http://t"
    ) as c:
        root = await c.get("/docs")
        assert '"/sched/docs-assets/swagger-ui-bundle.js"' in root.text
        assert 'data-openapi-url="/sched/openapi.json"' in root.text
