#!/usr/bin/env python3
"""Refresh the vendored Swagger UI and ReDoc files served by /docs and /redoc.

The files come from the npm registry at the exact versions pinned below, checked against the
registry's sha512 integrity; ASSETS.json records each file's sha256 so a test notices any
later edit. One edit is ours, made here and recorded there (PATCHES): ReDoc's sidebar footer
loads the Redocly logo from cdn.redoc.ly, which an offline install cannot reach; its image
source is emptied, so the browser asks for nothing and the component hides the image on the
error it fires (the "API docs by Redocly" link stays).

To upgrade: change a version and its integrity (`npm view PKG@VERSION dist.integrity`), run
`python3 scripts/vendor_docs_assets.py`, and check /docs and /redoc
(tests/ops/test_docs_browser.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

DEST = Path(__file__).resolve().parent.parent / "src" / "slotguard" / "api" / "static" / "docs"

# package, version, npm integrity, {file in the package: name served}
PACKAGES = [
    (
        "swagger-ui-dist",
        "5.35.0",
        "sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==",
        {
            "swagger-ui-bundle.js": "swagger-ui-bundle.js",
            "swagger-ui-bundle.js.LICENSE.txt": "swagger-ui-bundle.js.LICENSE.txt",
            "swagger-ui.css": "swagger-ui.css",
            "favicon-32x32.png": "favicon-32x32.png",
            "LICENSE": "swagger-ui-dist.LICENSE",
            "NOTICE": "swagger-ui-dist.NOTICE",
        },
    ),
    (
        "redoc",
        "2.5.4",
        "sha512-M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==",
        {
            "bundles/redoc.standalone.js": "redoc.standalone.js",
            "bundles/redoc.standalone.js.LICENSE.txt": "redoc.standalone.js.LICENSE.txt",
            "LICENSE": "redoc.LICENSE",
        },
    ),
]


# served file: (text in the package's file, replacement); each must occur exactly once.
PATCHES = {
    "redoc.standalone.js": [('src:"https://cdn.redoc.ly/redoc/logo-mini.svg"', 'src:""')],
}


def patched(served: str, data: bytes) -> bytes:
    for old, new in PATCHES.get(served, []):
        count = data.count(old.encode())
        if count != 1:
            raise SystemExit(f"{served}: {old!r} occurs {count} times, expected once")
        data = data.replace(old.encode(), new.encode())
    return data


def main() -> None:
    manifest: dict[str, object] = {
        "packages": {},
        "files": {},
        "patches": {f: [new for _, new in edits] for f, edits in PATCHES.items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, version, integrity, files in PACKAGES:
            out = subprocess.run(
                ["npm", "pack", f"{name}@{version}", "--json", "--pack-destination", tmp],
                check=True,
                capture_output=True,
                text=True,
            )
            tgz = Path(tmp) / json.loads(out.stdout)[0]["filename"]
            digest = hashlib.sha512(tgz.read_bytes()).digest()
            got = "sha512-" + base64.b64encode(digest).decode()
            if got != integrity:
                raise SystemExit(f"{name}@{version}: integrity {got} != pinned {integrity}")
            with tarfile.open(tgz) as tar:
                for inner, served in files.items():
                    member = tar.extractfile(f"package/{inner}")
                    assert member is not None, inner
                    data = patched(served, member.read())
                    (DEST / served).write_bytes(data)
                    manifest["files"][served] = hashlib.sha256(data).hexdigest()  # type: ignore[index]
            manifest["packages"][name] = {"version": version, "integrity": integrity}  # type: ignore[index]
    (DEST / "ASSETS.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"vendored into {DEST}")


if __name__ == "__main__":
    main()
