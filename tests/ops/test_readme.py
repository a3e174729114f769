"""The README works as written, from a clean clone.

A clone of this repository's HEAD (commit your changes first: a clone has only those) in a
temporary directory; the README's server command run there by `bash` with the system
`python3` first on PATH, exactly as written; then its curl walk-through (with the right key
and a wrong one), its Python client examples and the client's docstring quickstart against
that server; then the server is stopped with SIGTERM. uv's package cache is shared with this
machine, so the run installs from cache and stays short.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.ops.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SETUP_TIMEOUT_S = 240.0


def readme_block(readme: str, marker: str) -> str:
    """The fenced code block right after ``<!-- readme:<marker> -->``."""
    found = re.search(
        rf"<!-- readme:{re.escape(marker)} -->\n```\w*\n(.*?)\n```\n", readme, flags=re.S
    )
    assert found, f"README has no block marked readme:{marker}"
    return found.group(1)


def docstring_quickstart(source: str) -> str:
    doc = ast.get_docstring(ast.parse(source)) or ""
    found = re.search(r"Quick start[^\n]*::\n\n((?:    .*\n|\n)+)", doc + "\n")
    assert found, "the client's docstring has no quick start block"
    return textwrap.dedent(found.group(1))


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without this test run's virtualenv or slotguard settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "DATABASE_URL", "UV_PROJECT_ENVIRONMENT")
        and not k.startswith(("SLOTGUARD_", "PYTEST_"))
    }
    # The system interpreter (Debian's /usr/bin/python3 here), not a development one.
    env["PATH"] = os.pathsep.join(["/usr/bin", "/bin", env.get("PATH", "")])
    env.update(extra)
    return env


@dataclass
class Clone:
    path: Path
    readme: str
    port: int
    key: str
    log_path: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _wait_for_server(proc: subprocess.Popen[bytes], log_path: Path, port: int) -> str:
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    key = None
    while time.monotonic() < deadline:
        log = log_path.read_text(errors="replace")
        if key is None and (found := re.search(r"\b(sg_live_[\w-]+)", log)):
            key = found.group(1)
        if key is not None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return key
            except httpx.HTTPError:
                pass
        if proc.poll() is not None:
            raise AssertionError(f"the server command exited with {proc.returncode}:\n{log}")
        time.sleep(0.25)
    raise AssertionError(f"no admin key and /readyz after {SETUP_TIMEOUT_S} s:\n{log}")


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 40.0) -> bool:
    """SIGTERM to the command's process group; True when every process left in time."""
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=10)
    return False


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("the README test clones the repository: it needs git and a checkout")
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = tmp_path_factory.mktemp("readme") / "slotguard"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True, timeout=120)
    subprocess.run(["git", "-C", str(path), "checkout", "-q", head], check=True, timeout=60)
    readme = (path / "README.md").read_text()
    serve = readme_block(readme, "serve")
    port = free_port()
    log_path = path.parent / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["bash", "-c", serve],
            cwd=path,
            env=clean_env(SLOTGUARD_PORT=str(port), PYTHONUNBUFFERED="1"),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        key = _wait_for_server(proc, log_path, port)
        yield Clone(path, readme, port, key, log_path)
    finally:
        stopped = _stop_group(proc)
        log = log_path.read_text(errors="replace")
        assert stopped, f"the server did not stop within 40 s of SIGTERM:\n{log}"
        assert "Application shutdown complete" in log, log


def test_server_command_installs_no_dev_tools(clone: Clone) -> None:
    venv = clone.path / ".venv"
    assert (venv / "bin" / "slotguard").exists()
    for tool in ("pytest", "ruff", "mypy"):
        assert not (venv / "bin" / tool).exists(), f"the server command installed {tool}"


def test_ci_runs_the_readme_test_command(clone: Clone) -> None:
    command = readme_block(clone.readme, "test")
    assert "\n" not in command
    ci = (clone.path / ".ci" / "run").read_text().splitlines()
    assert command in [line.strip() for line in ci], ".ci/run must run the README's test command"


def _walkthrough(clone: Clone, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", readme_block(clone.readme, "walkthrough")],
        cwd=clone.path,
        env=clean_env(KEY=key, API=clone.api),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_curl_walkthrough(clone: Clone) -> None:
    done = _walkthrough(clone, clone.key)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for status in ("HTTP/1.1 201 Created", "HTTP/1.1 200 OK", "HTTP/1.1 409 Conflict"):
        assert status in out, out
    # The retry is a real replay: the header, and the same booking id as the first answer.
    retry = out.split("== retry", 1)[1].split("== conflict", 1)[0]
    assert re.search(r"(?im)^idempotent-replayed: true", retry), retry
    first = re.search(r'"id":"(bk_\w+)"', out.split("== booking", 1)[1])
    again = re.search(r'"id":"(bk_\w+)"', retry)
    assert first and again and first.group(1) == again.group(1)
    assert '"error":"conflict"' in out.split("== conflict", 1)[1]


def test_curl_walkthrough_with_a_wrong_key_stops_loudly(clone: Clone) -> None:
    done = _walkthrough(clone, "sg_live_not_a_key")
    assert done.returncode != 0
    assert "HTTP/1.1 401 Unauthorized" in done.stdout, done.stdout
    assert "stopped: business answered 401, not 201" in done.stderr, done.stderr
    assert "== slots" not in done.stdout  # nothing ran after the failed step
    assert "Traceback" not in done.stdout + done.stderr


def _run_python(clone: Clone, code: str) -> subprocess.CompletedProcess[str]:
    code = code.replace("sg_live_…", clone.key).replace("http://127.0.0.1:8000", clone.api)
    return subprocess.run(
        [str(clone.path / ".venv" / "bin" / "python"), "-c", code],
        cwd=clone.path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("marker", ["python-sync", "python-async"])
def test_readme_python_examples(clone: Clone, marker: str) -> None:
    code = readme_block(clone.readme, marker)
    assert "sg_live_…" in code and "http://127.0.0.1:8000" in code
    done = _run_python(clone, code)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"bk_\w+", done.stdout), done.stdout


def test_client_docstring_quickstart(clone: Clone) -> None:
    source = (clone.path / "src" / "slotguard" / "client" / "__init__.py").read_text()
    code = docstring_quickstart(source)
    assert "sg_live_…" in code
    done = _run_python(clone, code)
    assert done.returncode == 0, done.stdout + done.stderr
    # Its last step books a taken slot on purpose and prints the 409's code.
    assert "conflict" in done.stdout, done.stdout
