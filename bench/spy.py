"""Where does the server's time go? Samples a real `slotguard serve` under load with py-spy.

    python3 -m venv /tmp/spy && /tmp/spy/bin/pip install py-spy
    .venv/bin/python bench/spy.py --py-spy /tmp/spy/bin/py-spy \
        [--store postgres|sqlite] [--scenario bookings|slots] [--seconds 20]

Same setup as bench/run.py (throwaway database, server subprocess, the same businesses,
busy time and load), but while the load runs py-spy samples the server process (without
pausing it) and this script prints the self time by package and the hottest functions
(self and inclusive), and writes the raw collapsed stacks to bench/out/ for a flame graph
(e.g. `inferno-flamegraph < bench/out/spy-postgres-bookings.txt > fg.svg`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import run

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")

PACKAGES = (
    ("slotguard", "/slotguard/"),
    ("sqlalchemy", "/sqlalchemy/"),
    ("asyncpg", "/asyncpg/"),
    ("aiosqlite/sqlite3", "/aiosqlite/"),
    ("aiosqlite/sqlite3", "/sqlite3/"),
    ("pydantic", "/pydantic"),
    ("fastapi", "/fastapi/"),
    ("starlette", "/starlette/"),
    ("uvicorn/httptools", "/uvicorn/"),
    ("uvicorn/httptools", "/httptools/"),
    ("structlog/logging", "/structlog/"),
    ("structlog/logging", "/logging/"),
    ("prometheus_client", "/prometheus_client/"),
    ("json", "/json/"),
    ("asyncio/uvloop", "/asyncio/"),
    ("email/icalendar", "/email/"),
    ("email/icalendar", "/icalendar/"),
    ("asyncio/uvloop", "/uvloop/"),
    ("ulid", "/ulid/"),
    ("zoneinfo/datetime", "/zoneinfo/"),
)


_SQLA_CONSTRUCT = ("sql/", "util/langhelpers")
NATIVE = (
    ("libc (syscalls: socket writes/reads, incl. time descheduled in them)", "libc.so"),
    ("python interpreter (gc, alloc)", "libpython"),
    ("python interpreter (gc, alloc)", ".h"),
    ("asyncpg (C protocol)", "protocol.c"),
    ("asyncpg (C protocol)", "asyncpg/"),
    ("uvloop (C)", "loop.c"),
    ("uvloop (C)", "uvloop/"),
    ("httptools (C)", "httptools/"),
    ("greenlet (C)", "greenlet"),
)


def _package(file: str) -> str:
    if not file.endswith(".py"):
        for name, needle in NATIVE:
            if needle in file:
                return name
        return "other native"
    file = "/" + file.lstrip("/")  # py-spy prints paths relative to site-packages
    if "/sqlalchemy/" in file:
        rest = file.split("/sqlalchemy/", 1)[1]
        if rest.startswith(("orm/",)):
            return "sqlalchemy (ORM: loading, flush, session, attributes)"
        if rest.startswith(("engine/", "pool/", "dialects/")):
            return "sqlalchemy (engine: execution, results, pool, dialect)"
        if rest.startswith(_SQLA_CONSTRUCT):
            return "sqlalchemy (SQL expressions: construction, cache keys, compile)"
        return "sqlalchemy (other: util, greenlet glue)"
    for name, needle in PACKAGES:
        if needle in file:
            return name
    return "other"


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("/site-packages/", "/src/", "/lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{m.group('func')}"


_SYSCALLS = ("write", "read", "send", "recv", "sendto", "recvfrom", "epoll_wait", "poll")


def _is_syscall(frame: str) -> bool:
    m = _FRAME.match(frame)
    return bool(m and "libc" in m.group("file") and m.group("func") in _SYSCALLS)


def summarize(collapsed: Path, top: int = 25) -> str:
    total = 0
    syscalls = 0
    self_fn: collections.Counter[str] = collections.Counter()
    incl_fn: collections.Counter[str] = collections.Counter()
    self_pkg: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        frames = [f for f in stack.split(";") if f]
        # Stacks run under SQLAlchemy's greenlet_spawn start at the greenlet (e.g.
        # Session.execute), not at the request handler: inclusive times of handlers and
        # middleware therefore exclude the ORM work they caused.
        frames = [f for f in frames if _FRAME.match(f)]
        if not frames:
            continue
        leaf = frames[-1]
        if _is_syscall(leaf):
            # A thread parked in write()/read() with the GIL held: with --native this is
            # mostly time descheduled inside the syscall (the server's *system* CPU stays
            # small), not CPU work. Counted apart so the breakdown is of CPU work.
            syscalls += count
            continue
        total += count
        m = _FRAME.match(leaf)
        self_fn[_short(leaf)] += count
        self_pkg[_package(m.group("file") if m else "")] += count
        for name in {_short(f) for f in frames}:
            incl_fn[name] += count
    if not total:
        return "no samples"
    out = [
        f"{total} samples of CPU work; {syscalls} more in socket syscalls "
        f"({100 * syscalls / (total + syscalls):.0f}% of all, left out below)"
    ]
    out.append("self time by package:")
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in self_pkg.most_common()]
    out.append(f"top {top} functions by self time:")
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in self_fn.most_common(top)]
    out.append(f"top {2 * top} functions by inclusive time (slotguard and drivers):")
    interesting = [
        (n, c)
        for n, c in incl_fn.most_common()
        if n.startswith(("slotguard/", "sqlalchemy/", "asyncpg/", "aiosqlite/", "fastapi/"))
    ]
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in interesting[: 2 * top]]
    return "\n".join(out)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--py-spy", required=True, help="path of the py-spy executable")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--scenario", choices=["bookings", "slots"], default="bookings")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true", help="include C/Cython frames")
    args = parser.parse_args()

    out_file = harness.OUT_DIR / f"spy-{args.store}-{args.scenario}.txt"
    harness.OUT_DIR.mkdir(parents=True, exist_ok=True)
    with harness.temp_workdir() as workdir:
        store = await harness.create_store(args.store, workdir)
        server = harness.Server(store, workdir, harness.OUT_DIR / f"server-spy-{args.store}.log")
        try:
            server.start()
            await server.wait_ready()
            assert server.proc is not None
            pid = server.proc.pid
            api = run.Api(server.base_url, server.api_key)
            try:
                biz = await api.business("Bench Berlin", run.AVAIL_TZ, run.AVAIL_RULES)
                window_start = run.tomorrow_utc()
                window_end = window_start + dt.timedelta(days=run.AVAIL_WINDOW_DAYS)
                if args.scenario == "slots":
                    await run.post_busy(api, biz, run.busy_intervals(window_start, run.BUSY_COUNT))
                open_biz = [
                    await api.business(f"Open {i}", "UTC", run.OPEN_RULES)
                    for i in range(run.CLIENTS)
                ]
            finally:
                await api.close()
            spy = subprocess.Popen(
                [
                    args.py_spy, "record", "--pid", str(pid), "--duration",
                    str(int(args.seconds)), "--rate", str(args.rate), "--format", "raw",
                    "--gil", "--output", str(out_file),
                    *(["--native"] if args.native else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                if args.scenario == "bookings":
                    res = await run.booking_load(
                        server.base_url, server.api_key, open_biz,
                        duration_s=args.seconds, server_pid=pid,
                    )  # fmt: skip
                    print(
                        f"{res['bookings_per_s']} bookings/s, p50 {res['p50_ms']} ms, "
                        f"p99 {res['p99_ms']} ms, non-201 {res['non_201']}, "
                        f"server CPU {res['server_cpu_ms_per_booking']} ms/booking"
                    )
                else:
                    runs = max(100, int(args.seconds * 60))
                    res = await run.http_slots(
                        server.base_url, server.api_key, biz, window_start, window_end,
                        runs=runs, warmup=10, server_pid=pid,
                    )  # fmt: skip
                    print(
                        f"{res['slots']} slots, p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, "
                        f"server CPU {res['server_cpu_ms_per_request']} ms/request"
                    )
            finally:
                try:
                    _, err = spy.communicate(timeout=args.seconds + 60)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    _, err = spy.communicate()
            if spy.returncode != 0:
                print(f"py-spy failed ({spy.returncode}): {err.decode()[-500:]}")
        finally:
            server.stop()
            await harness.drop_store(store)
    if out_file.exists():
        print(summarize(out_file))
        print(f"collapsed stacks: {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
