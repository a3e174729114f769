"""Real `slotguard` processes for the operations tests, and headless Debian chromium.

A server runs on a throwaway SQLite file, listens on 127.0.0.1 on a free port, and writes its
output to a log file whose tail is shown when a check fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = os.environ.get("SLOTGUARD_CHROMIUM", "/usr/bin/chromium")
READY_TIMEOUT_S = 40.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def slotguard_exe() -> str:
    """The `slotguard` script installed next to this interpreter."""
    return str(Path(sys.executable).with_name("slotguard"))


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def start_server(
    workdir: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> Server:
    port = port or free_port()
    log_path = workdir / f"serve-{port}.log"
    full_env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'slotguard.db'}",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [slotguard_exe(), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=workdir,
            start_new_session=True,
        )
    return Server(proc, port, log_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `slotguard serve` (no background worker) for the module."""
    srv = start_server(tmp_path_factory.mktemp("serve"), "--no-worker")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def _browser_missing(reason: str) -> None:
    message = f"headless browser tests need Debian chromium at {CHROMIUM}: {reason}"
    if os.environ.get("SLOTGUARD_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """Chromium driven by Playwright through executable_path (no browser download)."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _browser_missing("not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()
