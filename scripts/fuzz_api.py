#!/usr/bin/env python3
"""Fuzz a real `slotguard serve` from its own OpenAPI document with schemathesis.

For each store asked for (SQLite, PostgreSQL), on a fresh database: start the server with a
known bootstrap admin key, create one object of each kind (so path ids lead somewhere and
not only to 404s), then run schemathesis for a fixed time budget. The run fails on any 5xx,
on a response that does not match its documented schema or content type, on a status code
the document does not list, and on a 405 without a complete `Allow`.

    uv run --frozen python scripts/fuzz_api.py --store sqlite --store postgres --seconds 75

PostgreSQL comes from SLOTGUARD_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/
postgres): a throwaway database is created on it and dropped after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "response_schema_conformance",
    "content_type_conformance",
    "unsupported_method",
    "allow_header_conformance",
    "missing_required_header",
    "ignored_auth",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_admin_dsn() -> str:
    url = os.environ.get("SLOTGUARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(_pg_admin_dsn(), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _seed(base: str, key: str) -> dict[str, str]:
    """One object of each kind; returns path parameter values for schemathesis."""
    h = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=h, timeout=10) as c:

        def post(path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
            r = c.post(path, json=body, headers=headers)
            r.raise_for_status()
            data: dict[str, Any] = r.json()["data"]
            return data

        all_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        biz = post(
            "/v1/businesses",
            {
                "name": "Fuzz",
                "timezone": "America/New_York",
                "rules": {"working_hours": [{"days": all_days, "start": "00:00", "end": "24:00"}]},
            },
        )
        post("/v1/meeting-classes", {"name": "fuzz", "display_name": "Fuzz", "priority": 60})
        start = time.time() + 2 * 86400
        iso = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(start))
        booking = post(
            "/v1/bookings",
            {"business_id": biz["id"], "start_time": iso, "title": "Fuzz"},
            **{"Idempotency-Key": uuid.uuid4().hex},
        )
        hold = post("/v1/availability", {"business_id": biz["id"], "duration_minutes": 30})
        busy_start = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(start + 3 * 3600))
        busy_end = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(start + 4 * 3600))
        busy = post(f"/v1/businesses/{biz['id']}/busy", {"start": busy_start, "end": busy_end})
        agent = post(
            "/v1/agents",
            {"name": "fuzz", "scopes": ["bookings:read"], "allowed_business_ids": "*"},
        )
        agent_key = post(f"/v1/agents/{agent['id']}/keys", {"name": "fuzz"})
        # A closed local port: a test delivery fails at once, touching nothing. (No calendar:
        # connecting one fetches it first.)
        endpoint = post(
            "/v1/webhook-endpoints",
            {"url": "http://127.0.0.1:9/hook", "events": ["booking.created"]},
        )
    return {
        "business_id": biz["id"],
        "booking_id": booking["id"],
        "hold_id": hold["hold_id"],
        "busy_id": busy["id"],
        "agent_id": agent["id"],
        "key_id": agent_key["id"],
        "endpoint_id": endpoint["id"],
        "name": "fuzz",
    }


DESTRUCTIVE = ("DELETE /v1/keys/{key_id}", "DELETE /v1/businesses/{business_id}")
# Zones with DST changes of every kind, and official aliases, for `timezone` fields: random
# strings would almost never name a zone, and every such request would stop at validation.
ZONES = (
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Havana",
    "Africa/Cairo",
    "Asia/Kolkata",
    "Asia/Calcutta",
    "Pacific/Kiritimati",
)


def _config(path: Path, key: str, params: dict[str, str]) -> None:
    """schemathesis.toml: the key, the seeded path ids, and dictionaries so that bodies name
    the seeded business and real zones most of the time (the rest stays random)."""
    lines = ["[auth.openapi.bearerAuth]", f'bearer = "{key}"', ""]
    # A missing If-Match is 428 Precondition Required (RFC 6585, spec §1.6), not one of the
    # check's default 4xx codes; a missing Idempotency-Key is 400.
    lines += ["[checks.missing_required_header]", "expected-statuses = [400, 401, 403, 428]", ""]
    lines += [
        "[dictionaries]",
        f"businesses = {{ values = [{json.dumps(params['business_id'])}] }}",
    ]
    lines += [f"zones = {{ values = {json.dumps(list(ZONES))} }}"]
    lines += ['classes = { values = ["fuzz", "default"] }', "", "[parameters]"]
    lines += [f"{json.dumps(name)} = {json.dumps(value)}" for name, value in params.items()]
    for field, dictionary in (
        ("body.business_id", "businesses"),
        ("query.business_id", "businesses"),
        ("body.timezone", "zones"),
        ("query.timezone", "zones"),
        ("body.meeting_class", "classes"),
    ):
        lines.append(f'"{field}" = {{ dictionary = "{dictionary}", probability = 0.8 }}')
    path.write_text("\n".join(lines) + "\n")


def _statuses(log_path: Path) -> Counter[str]:
    """Responses by status class, from the server's access log (one JSON object a line)."""
    counts: Counter[str] = Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "request":
            counts[f"{str(entry.get('status', '?'))[0]}xx"] += 1
    return counts


def fuzz(store: str, seconds: int, workdir: Path) -> int:
    name = f"slotguard_fuzz_{secrets.token_hex(4)}"
    if store == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir / 'fuzz.db'}"
    else:
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
        url = make_url(_pg_admin_dsn()).set(database=name).render_as_string(hide_password=False)
    key = f"sg_live_fuzz{secrets.token_hex(16)}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = workdir / f"server-{store}.log"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SLOTGUARD_BOOTSTRAP_API_KEY": key,
        "SLOTGUARD_EMBEDDED_WORKER": "0",
        # Loopback targets, so the seeded webhook fails fast instead of reaching out; the
        # fuzzer's own URLs then mostly point at closed local ports too.
        "SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS": "1",
        "SLOTGUARD_ALLOW_PRIVATE_CALENDARS": "1",
    }
    env.pop("SLOTGUARD_DATABASE_URL", None)
    slotguard = str(Path(sys.executable).with_name("slotguard"))
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [slotguard, "serve", "--port", str(port), "--no-worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print(log_path.read_text(), file=sys.stderr)
                raise SystemExit(f"[{store}] slotguard serve did not become ready")
            time.sleep(0.3)
        config = workdir / f"schemathesis-{store}.toml"
        _config(config, key, _seed(base, key))
        print(f"== fuzzing slotguard on {store} for {seconds} s ({base})", flush=True)
        # One worker: with several, hypothesis' lambda descriptions race in CPython 3.11's
        # AST constructor ("recursion depth mismatch") and the run aborts.
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            f"{base}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            "--no-color",
        ]
        # Two operations would end the run's usefulness early: revoking a key (linked from
        # GET /v1/me, it revokes the very key the fuzzer uses) and deleting a business (the
        # seeded one every other request targets). They get a short run of their own, last.
        last = [arg for name in DESTRUCTIVE for arg in ("--exclude-name", name)]
        only = [arg for name in DESTRUCTIVE for arg in ("--include-name", name)]
        status = subprocess.run(
            [*command, *last, "--max-time", str(max(1, seconds - 10))], cwd=workdir, check=False
        ).returncode
        status = (
            status
            or subprocess.run(
                [*command, *only, "--max-time", "10"], cwd=workdir, check=False
            ).returncode
        )
        served = _statuses(log_path)
        crashed = log_path.read_text(errors="replace").count("unhandled_error")
        figures = ", ".join(f"{k}: {v}" for k, v in sorted(served.items()))
        print(f"== [{store}] schemathesis exit {status}; server answered {figures}")
        print(f"== [{store}] server unhandled errors: {crashed}")
        return status if status else (1 if crashed else 0)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if store == "postgres":
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--seconds", type=int, default=75, help="Budget per store")
    parser.add_argument("--keep", type=Path, help="Keep server logs and configs here")
    args = parser.parse_args()
    failed = []
    with tempfile.TemporaryDirectory(prefix="slotguard-fuzz-") as tmp:
        for store in args.store or ["sqlite", "postgres"]:
            workdir = (args.keep or Path(tmp)) / store
            workdir.mkdir(parents=True, exist_ok=True)
            if fuzz(store, args.seconds, workdir) != 0:
                failed.append(store)
                for log in workdir.glob("server-*.log"):
                    sys.stderr.write(log.read_text(errors="replace")[-20_000:])
    if failed:
        print(f"fuzzing failed on: {', '.join(failed)}")
        return 1
    print("fuzzing passed on every store")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
