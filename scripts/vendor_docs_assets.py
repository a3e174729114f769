#!/usr/bin/env python3
"""Refresh the vendored Swagger UI and ReDoc files served by /docs and /redoc.

The files come from the npm registry at the exact versions pinned below, checked against the
registry's sha512 integrity; ASSETS.json records each file's sha256 so a test notices any
later edit. To upgrade: change a version and its integrity (`npm view PKG@VERSION
dist.integrity`), run `python3 scripts/vendor_docs_assets.py`, and check /docs and /redoc
(tests/api/test_docs_browser.py).
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


def main() -> None:
    manifest: dict[str, object] = {"packages": {}, "files": {}}
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
                    data = member.read()
                    (DEST / served).write_bytes(data)
                    manifest["files"][served] = hashlib.sha256(data).hexdigest()  # type: ignore[index]
            manifest["packages"][name] = {"version": version, "integrity": integrity}  # type: ignore[index]
    (DEST / "ASSETS.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"vendored into {DEST}")


if __name__ == "__main__":
    main()
