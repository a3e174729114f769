"""Plumbing for the benchmark: machine facts, stores, the server process, RSS sampling, stats.

Nothing here asserts anything: the benchmark reports figures, it never fails a build.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

PG_ADMIN_URL = os.environ.get(
    "SLOTGUARD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"


# --- the run per store ---------------------------------------------------------------------


async def run_stores(
    stores: Sequence[str],
    bench: Callable[[str], Awaitable[dict[str, Any]]],
    table: Callable[[dict[str, Any]], str],
    report: dict[str, Any],
    filename: str,
) -> int:
    """Each store in turn: its figures printed and kept in `report["stores"]`. A store whose
    run breaks is recorded with its error and the next one still runs. The report goes to
    `OUT_DIR/filename`; the exit status is 1 when any store broke, else 0."""
    report.setdefault("stores", {})
    failed = False
    for name in stores:
        try:
            res = await bench(name)
            report["stores"][name] = res
            print(table(res), flush=True)
        except Exception as exc:
            failed = True
            traceback.print_exc()
            report["stores"][name] = {"store": name, "error": repr(exc)}
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / filename
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return 1 if failed else 0


# --- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation); NaN for an empty sample."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(ns: Sequence[int]) -> dict[str, float | int]:
    """p50/p99/max/mean in milliseconds of durations given in nanoseconds."""
    ms = [v / 1e6 for v in ns]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3) if ms else math.nan,
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else math.nan,
    }


# --- machine ------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_total = psutil.virtual_memory().total
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_total / 2**30, 1),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "platform": platform.platform(),
    }


async def pg_server_version() -> str | None:
    try:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def pg_sessions(dsn: str) -> int | None:
    """pg_stat_database.sessions of the database: sessions ever opened (PostgreSQL 14+).

    Statistics are flushed lazily; a short sleep lets the last connections be counted.
    """
    await asyncio.sleep(1.0)
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        value = await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(value) if value is not None else None
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()


# --- stores -------------------------------------------------------------------------------


@dataclass
class StoreHandle:
    """A throwaway database: its URL for the server and what is needed to remove it."""

    name: str  # sqlite | postgres
    url: str
    sqlite_path: Path | None = None
    pg_database: str | None = None
    _tmpdir: Path | None = None

    @property
    def pg_dsn(self) -> str:
        assert self.pg_database is not None
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.pg_database


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_store(name: str, workdir: Path) -> StoreHandle:
    if name == "sqlite":
        path = workdir / "bench.db"
        return StoreHandle(name, f"sqlite:///{path}", sqlite_path=path)
    if name == "postgres":
        db = f"sg_bench_{uuid.uuid4().hex[:12]}"
        await _pg_admin(f'CREATE DATABASE "{db}"')
        handle = StoreHandle(name, "", pg_database=db)
        handle.url = handle.pg_dsn
        return handle
    raise ValueError(f"unknown store {name!r}")


async def drop_store(handle: StoreHandle) -> None:
    if handle.pg_database is not None:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{handle.pg_database}" WITH (FORCE)')


@contextlib.contextmanager
def temp_workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="slotguard-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- the server process -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _slotguard_command() -> list[str]:
    script = Path(sys.executable).parent / "slotguard"
    if script.exists():
        return [str(script)]
    found = shutil.which("slotguard")
    if found:
        return [found]
    raise RuntimeError("the `slotguard` command was not found next to this Python; run uv sync")


@dataclass
class Server:
    """`slotguard serve` as a child process (its own session, stopped with SIGTERM)."""

    store: StoreHandle
    workdir: Path
    log_path: Path
    api_key: str = field(default_factory=lambda: f"sg_live_bench{uuid.uuid4().hex}")
    port: int = field(default_factory=free_port)
    workers: int = 1
    # e.g. ["--no-worker"]
    extra_args: list[str] = field(default_factory=list)
    # "serve" (the API) or "worker" (the standalone background worker)
    command: str = "serve"
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.store.url,
            SLOTGUARD_BOOTSTRAP_API_KEY=self.api_key,
            SLOTGUARD_LOG_LEVEL="WARNING",
        )
        env.pop("SLOTGUARD_DATABASE_URL", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        if self.command == "serve":
            cmd = [*_slotguard_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
            if self.workers != 1:
                cmd += ["--workers", str(self.workers)]
        else:
            cmd = [*_slotguard_command(), self.command]
        cmd += self.extra_args
        # cwd is the scratch directory so no stray `.env` of the caller is picked up.
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.workdir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_ready(self, timeout_s: float = 90.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {self.proc.returncode}; log: {self.log_path}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get("/readyz")
                    if r.status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout_s:.0f} s; log: {self.log_path}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait, then SIGKILL if it hangs. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            return proc.returncode
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


# --- memory and CPU sampling --------------------------------------------------------------


def tree_rss(proc: psutil.Process) -> int:
    """RSS of a process plus all its descendants, in bytes (vanished children are skipped)."""
    total = 0
    procs = [proc]
    with contextlib.suppress(psutil.Error):
        procs += proc.children(recursive=True)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def tree_cpu_seconds(proc: psutil.Process, *, kind: str = "both") -> float:
    """CPU-seconds (user, system or both) of a process and its descendants."""
    total = 0.0
    procs = [proc]
    with contextlib.suppress(psutil.Error):
        procs += proc.children(recursive=True)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += {"user": t.user, "system": t.system}.get(kind, t.user + t.system)
    return total


class RssSampler:
    """Samples a process tree's RSS every `interval_s` in a thread; keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak = 0
        self.samples = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss(self._proc)
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _postgres_cpu() -> float:
    """CPU-seconds of every live postgres process, plus the exited backends (which the
    postmaster has reaped: its children_* times)."""
    total = 0.0
    for p in psutil.process_iter(["name"]):
        if p.info.get("name") != "postgres":
            continue
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
            if p.ppid() == 1 or p.parent() is None or p.parent().name() != "postgres":
                total += t.children_user + t.children_system
    return total


def _system_busy() -> float:
    t = psutil.cpu_times()
    return float(sum(t)) - t.idle - getattr(t, "iowait", 0.0)


class CpuMeter:
    """Where the machine's CPU time went during a phase, in CPU-seconds.

    `server`: the slotguard process tree; `bench`: this process (the load generator or the
    raw driver); `postgres`: every process named postgres (backends that exit during the
    phase are undercounted); `other`: everything else that ran on the machine meanwhile, i.e.
    noise from outside the benchmark.
    """

    def __init__(self, server_pid: int | None = None) -> None:
        self._server = psutil.Process(server_pid) if server_pid else None
        self._me = psutil.Process()

    def _snap(self) -> dict[str, float]:
        me = self._me.cpu_times()
        return {
            "wall": time.perf_counter(),
            "system": _system_busy(),
            "server": tree_cpu_seconds(self._server) if self._server else 0.0,
            "server_sys": (tree_cpu_seconds(self._server, kind="system") if self._server else 0.0),
            "bench": me.user + me.system,
            "postgres": _postgres_cpu(),
        }

    def __enter__(self) -> CpuMeter:
        self._start = self._snap()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._snap()
        d = {k: end[k] - self._start[k] for k in end}
        other = d["system"] - d["server"] - d["bench"] - d["postgres"]
        self.result = {
            "wall_s": round(d["wall"], 2),
            "cpus": os.cpu_count(),
            "server_cpu_s": round(d["server"], 2),
            "server_system_cpu_s": round(d["server_sys"], 2),
            "bench_cpu_s": round(d["bench"], 2),
            "postgres_cpu_s": round(d["postgres"], 2),
            "other_cpu_s": round(max(other, 0.0), 2),
            "machine_busy_pct": round(100 * d["system"] / (d["wall"] * (os.cpu_count() or 1)), 1),
        }


def wait_for_quiet(max_wait_s: float, busy_below_pct: float = 20.0) -> float:
    """Wait (up to `max_wait_s`) until the machine's CPU is mostly idle for 5 s.

    Returns the last measured busy percentage. Other workloads on the machine distort every
    figure here, and on a 2-CPU box they distort them a lot.
    """
    deadline = time.monotonic() + max_wait_s
    busy = psutil.cpu_percent(interval=5)
    while busy >= busy_below_pct and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=5)
    return busy
