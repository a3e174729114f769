"""The `slotguard` command as an operator meets it: one clear line per startup problem,
help without type placeholders, `--version`, finding accounts again, one log format."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.main
from typer.testing import CliRunner

from slotguard.cli import app
from tests.conftest import skip_or_fail_pg
from tests.ops.conftest import free_port, slotguard_exe, start_server
from tests.pg import pg_admin_url, pg_available

pytestmark = pytest.mark.slow


def run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}",
        **(env or {}),
    }
    return subprocess.run(
        [slotguard_exe(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
        timeout=90,
        check=False,
    )


def assert_one_line_problem(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 1, no traceback, and stderr's last line is the single `slotguard: …` line."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    output = done.stdout + done.stderr
    assert "Traceback" not in output and 'File "' not in output, output
    problems = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(problems) == 1, done.stderr
    line = problems[0]
    assert line.startswith("slotguard: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


# -- one line per startup problem -------------------------------------------------------


@pytest.mark.parametrize("command", [("migrate",), ("serve", "--port", "0"), ("worker",)])
def test_unreachable_database_is_one_line_without_the_password(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://slotguard:pw_not_for_output@127.0.0.1:{port}/slotguard"
    done = run(tmp_path, *command, env={"DATABASE_URL": url})
    line = assert_one_line_problem(done, f"127.0.0.1:{port}", "DATABASE_URL")
    assert "pw_not_for_output" not in done.stdout + done.stderr
    assert "***" in line


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("not a url at all", "DATABASE_URL"),
        ("mysql://root@127.0.0.1/app", "unsupported database URL scheme: mysql"),
        ("sqlite:////nonexistent-dir-for-slotguard/x.db", "SQLite file"),
    ],
)
def test_bad_database_url_is_one_line(tmp_path: Path, url: str, needle: str) -> None:
    assert_one_line_problem(run(tmp_path, "migrate", env={"DATABASE_URL": url}), needle)


def test_unknown_host_is_one_line(tmp_path: Path) -> None:
    url = "postgresql://postgres@no-such-host.invalid:5432/slotguard"
    assert_one_line_problem(
        run(tmp_path, "migrate", env={"DATABASE_URL": url}), "no-such-host.invalid", "host"
    )


def test_missing_postgres_database_is_one_line(tmp_path: Path) -> None:
    if not pg_available():
        skip_or_fail_pg()
    from sqlalchemy.engine import make_url

    name = f"slotguard_missing_{uuid.uuid4().hex[:8]}"
    url = make_url(pg_admin_url()).set(database=name).render_as_string(hide_password=False)
    assert_one_line_problem(
        run(tmp_path, "migrate", env={"DATABASE_URL": url}), f"no database '{name}'", "createdb"
    )


def test_database_from_a_newer_version_is_one_line(tmp_path: Path) -> None:
    assert run(tmp_path, "migrate").returncode == 0
    with sqlite3.connect(tmp_path / "ops.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    for command in (("migrate",), ("serve", "--port", str(free_port()))):
        assert_one_line_problem(run(tmp_path, *command), "9999_from_the_future", "newer slotguard")


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run(tmp_path, "serve", "--port", str(port))
    assert_one_line_problem(done, f"127.0.0.1:{port}", "--port")
    # It failed before touching the database.
    assert not (tmp_path / "ops.db").exists()


def test_invalid_setting_is_one_line(tmp_path: Path) -> None:
    done = run(tmp_path, "migrate", env={"SLOTGUARD_DB_POOL_SIZE": "many"})
    assert_one_line_problem(done, "SLOTGUARD_DB_POOL_SIZE")


# -- help and version ----------------------------------------------------------------------


def _all_commands() -> list[tuple[str, ...]]:
    """Every command and group of the CLI, found by walking it (new commands included)."""
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = _all_commands()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "slotguard")
def test_help_has_no_type_placeholders(command: tuple[str, ...]) -> None:
    # In-process (the help text is the same in a subprocess, only slower to get).
    done = CliRunner().invoke(app, [*command, "--help"], prog_name="slotguard")
    assert done.exit_code == 0, done.output
    assert "Usage: slotguard" in done.output
    assert not re.search(r"<\w+>", done.output), done.output
    # Options that take a value name it.
    if command == ("serve",):
        assert "--port PORT" in done.output and "--host ADDRESS" in done.output


def test_version(tmp_path: Path) -> None:
    done = run(tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"slotguard {version('slotguard')}"


# -- a lost admin key ----------------------------------------------------------------------


def test_list_accounts_and_create_key_for_the_only_account(tmp_path: Path) -> None:
    empty = run(tmp_path, "admin", "list-accounts")
    assert empty.returncode == 0 and "no accounts yet" in empty.stdout
    assert_one_line_problem(run(tmp_path, "admin", "create-key"), "no account yet")

    made = run(tmp_path, "admin", "create-account", "--name", "acme")
    account = re.search(r"account: (acct_\w+)", made.stdout)
    assert made.returncode == 0 and account, made.stderr
    listed = run(tmp_path, "admin", "list-accounts")
    assert listed.returncode == 0, listed.stderr
    assert f"{account.group(1)}  name=acme" in listed.stdout and "admin_keys=1" in listed.stdout

    again = run(tmp_path, "admin", "create-key", "--name", "recovered")
    assert again.returncode == 0, again.stderr
    assert f"account: {account.group(1)}" in again.stdout
    assert re.search(r"admin key \(shown once\): sg_live_[\w-]+", again.stdout)
    assert "admin_keys=2" in run(tmp_path, "admin", "list-accounts").stdout

    assert run(tmp_path, "admin", "create-account", "--name", "other").returncode == 0
    assert_one_line_problem(run(tmp_path, "admin", "create-key"), "2 accounts", "--account")
    assert_one_line_problem(
        run(tmp_path, "admin", "create-key", "--account", "acct_nope"), "no such account"
    )


# -- one log format --------------------------------------------------------------------------


def _log_lines(text: str) -> list[str]:
    # The admin key banner of a first start is a message to the operator, not a log line.
    return [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith("slotguard: ") and "sg_live_" not in line
    ]


def test_serve_logs_are_json_lines_and_probes_are_quiet(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--no-worker")
    try:
        srv.wait_ready()
        for _ in range(3):
            assert httpx.get(f"{srv.base_url}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"{srv.base_url}/v1/me", timeout=5).status_code == 401
    finally:
        stopped = srv.stop()
    # A graceful stop: uvicorn finishes, then exits by the signal it was stopped with.
    assert stopped in (0, -signal.SIGTERM), srv.log()
    assert "Finished server process" in srv.log()
    lines = _log_lines(srv.log())
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}\n{srv.log()}")
    loggers = {r.get("logger") for r in records}
    assert "uvicorn.error" in loggers, loggers  # uvicorn's own lines, as JSON
    access = [r for r in records if r.get("event") == "request"]
    probes = [r for r in access if r["path"] == "/readyz"]
    assert len(probes) >= 3 and all(r["status"] == 200 for r in probes)
    assert any(r["path"] == "/v1/me" and r["status"] == 401 for r in access)
    # Migration lines appear at startup only, not once per probe.
    first_probe = records.index(probes[0])
    assert not [r for r in records[first_probe:] if str(r.get("logger", "")).startswith("alembic")]
    # One access line per request (uvicorn's own access log stays off).
    assert "uvicorn.access" not in loggers


def test_console_format_on_request(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--no-worker", env={"SLOTGUARD_LOG_FORMAT": "console"})
    try:
        srv.wait_ready()
    finally:
        assert srv.stop() in (0, -signal.SIGTERM), srv.log()
    lines = _log_lines(srv.log())
    assert lines
    assert not [line for line in lines if line.startswith("{")], lines
    assert any("Application startup complete" in line for line in lines)


def test_worker_logs_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [slotguard_exe(), "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}"},
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 40
        while "worker_started" not in log_path.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    records = [json.loads(line) for line in _log_lines(log_path.read_text())]
    assert any(r.get("event") == "worker_started" for r in records)
