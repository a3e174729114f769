"""`slotguard` command line: serve | worker | migrate | admin."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import os
import socket
import sys
from importlib.metadata import version as package_version
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy import text

from slotguard.config import Settings, get_settings
from slotguard.logs import configure_logging
from slotguard.services import accounts
from slotguard.store.db import Database
from slotguard.store.diagnose import explain_database_error
from slotguard.store.migrate import upgrade_to_head

# Plain help (no rich markup): options read `--port PORT`, flags stand alone. No local
# variables in tracebacks: they would print settings (passwords, keys).
TYPER_OPTIONS: dict[str, bool | None] = {
    "no_args_is_help": True,
    "rich_markup_mode": None,
    "pretty_exceptions_show_locals": False,
}

app = typer.Typer(
    help="slotguard: a scheduling API that never books a slot twice.",
    **TYPER_OPTIONS,  # type: ignore[arg-type]
)
admin = typer.Typer(
    help="Accounts, admin keys, the secret key.",
    **TYPER_OPTIONS,  # type: ignore[arg-type]
)
app.add_typer(admin, name="admin")


# Commands that never open the database: their network errors are not the database's.
NO_DATABASE_COMMANDS = frozenset({"mcp"})


class Problem(Exception):
    """A failure the operator can fix, printed as one line (what, where, how to fix)."""


def main() -> None:
    """The `slotguard` command: known problems end as one line on stderr and exit code 1."""
    try:
        app()
    except Problem as exc:
        _fail(str(exc))
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        _fail(f"invalid configuration ({fields}): fix the environment or .env")
    except Exception as exc:
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
        if command in NO_DATABASE_COMMANDS:
            raise
        try:
            url = get_settings().database_url
        except ValidationError:
            raise exc from None
        message = explain_database_error(exc, url)
        if message is None:
            raise
        _fail(message)


def _fail(message: str) -> None:
    typer.echo(f"slotguard: {message}", err=True)
    sys.exit(1)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"slotguard {package_version('slotguard')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """slotguard: a scheduling API that never books a slot twice."""


def _logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)


def _check_listen(host: str, port: int) -> None:
    """Fail before migrating when the address cannot be listened on (as uvicorn would bind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as exc:
            raise Problem(
                f"cannot listen on {host}:{port}: unknown host ({exc.strerror}): fix --host"
            ) from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                hint = "another process uses it: stop that process or choose another --port"
            elif exc.errno == errno.EACCES:
                hint = "permission denied: ports below 1024 need privileges, choose another --port"
            elif exc.errno == errno.EADDRNOTAVAIL:
                hint = "this machine has no such address: fix --host"
            else:
                hint = exc.strerror or str(exc)
            raise Problem(f"cannot listen on {host}:{port}: {hint}") from None


# Fixed key for the PostgreSQL advisory lock that makes first-start bootstrap happen once.
BOOTSTRAP_LOCK_KEY = 7_310_512_002


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _bootstrap(url: str, raw_key: str | None) -> tuple[str, str] | None:
    db = Database.connect(url, pool_size=1)
    try:
        async with db.write() as s:
            if not db.is_sqlite:
                await s.execute(text(f"SELECT pg_advisory_xact_lock({BOOTSTRAP_LOCK_KEY})"))
            created = await accounts.bootstrap(s, now=_now(), raw_key=raw_key)
        return None if created is None else (created[0].id, created[1])
    finally:
        await db.dispose()


@app.command()
def mcp() -> None:
    """Serve the MCP server over stdio (env SLOTGUARD_URL, SLOTGUARD_API_KEY)."""
    try:
        from slotguard.mcp.stdio import main
    except ModuleNotFoundError as exc:
        if exc.name != "mcp" and not (exc.name or "").startswith("mcp."):
            raise
        typer.echo("slotguard mcp needs the mcp extra: pip install 'slotguard[mcp]'", err=True)
        raise typer.Exit(2) from None
    main()


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    settings = get_settings()
    _logging(settings)
    upgrade_to_head(settings.database_url)
    typer.echo("migrations applied")


@app.command()
def serve(
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on (0.0.0.0: every interface)",
            metavar="ADDRESS",
            envvar="SLOTGUARD_HOST",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="TCP port", metavar="PORT", envvar="SLOTGUARD_PORT")
    ] = 8000,
    workers: Annotated[
        int, typer.Option(help="API worker processes", metavar="N", envvar="SLOTGUARD_WORKERS")
    ] = 1,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run the background worker in-process")
    ] = False,
) -> None:
    """Apply migrations, bootstrap an empty database, and serve the API."""
    import uvicorn

    settings = get_settings()
    _logging(settings)
    _check_listen(host, port)
    upgrade_to_head(settings.database_url)
    created = asyncio.run(_bootstrap(settings.database_url, settings.bootstrap_api_key))
    if created is not None:
        account_id, raw = created
        if settings.bootstrap_api_key:
            typer.echo(f"slotguard: created account {account_id} with the bootstrap admin key")
        else:
            typer.echo(f"slotguard: created account {account_id}; admin key (shown once):")
            typer.echo(f"  {raw}")
    if no_worker:
        os.environ["SLOTGUARD_EMBEDDED_WORKER"] = "0"
        # The app reads the settings again (in this process with one API worker): the
        # copy cached above must not keep the embedded worker on.
        get_settings.cache_clear()
    uvicorn.run(
        "slotguard.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
    )


@app.command()
def worker() -> None:
    """Run the background worker alone (hold expiry, outbox, housekeeping)."""
    from slotguard.effects.worker import run_forever

    settings = get_settings()
    _logging(settings)
    upgrade_to_head(settings.database_url)
    asyncio.run(run_forever(settings))


@admin.command("create-account")
def create_account(
    name: Annotated[str, typer.Option(help="Account name", metavar="NAME")] = "default",
) -> None:
    """Create an account and print its first admin key (shown once)."""

    async def run() -> tuple[str, str]:
        settings = get_settings()
        db = Database.connect(settings.database_url, pool_size=1)
        try:
            async with db.write() as s:
                account = await accounts.create_account(s, name=name, now=_now())
                _, raw = await accounts.create_key(
                    s, account_id=account.id, now=_now(), name="admin"
                )
            return account.id, raw
        finally:
            await db.dispose()

    upgrade_to_head(get_settings().database_url)
    account_id, raw = asyncio.run(run())
    typer.echo(f"account: {account_id}")
    typer.echo(f"admin key (shown once): {raw}")


@admin.command("list-accounts")
def list_accounts() -> None:
    """List the accounts (id, name, creation time, unrevoked admin keys)."""
    from slotguard.store import repositories as repo

    async def run() -> list[tuple[str, str, dt.datetime, int]]:
        db = Database.connect(get_settings().database_url, pool_size=1)
        try:
            async with db.read() as s:
                rows = await repo.list_accounts(s)
                return [(a.id, a.name, a.created_at, keys) for a, keys in rows]
        finally:
            await db.dispose()

    upgrade_to_head(get_settings().database_url)
    rows = asyncio.run(run())
    if not rows:
        typer.echo("no accounts yet: `slotguard serve` creates the first one")
    for account_id, name, created_at, keys in rows:
        typer.echo(
            f"{account_id}  name={name}  created={created_at.isoformat()}  admin_keys={keys}"
        )


@admin.command("create-key")
def create_key(
    account: Annotated[
        str | None,
        typer.Option(
            help="Account id (acct_…); may be left out when there is only one account",
            metavar="ACCOUNT_ID",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="A label for the key", metavar="NAME")] = None,
) -> None:
    """Create another admin key for an account (shown once)."""
    from slotguard.store import repositories as repo

    async def run() -> tuple[str, str]:
        db = Database.connect(get_settings().database_url, pool_size=1)
        try:
            async with db.write() as s:
                if account is not None:
                    if await repo.get_account(s, account) is None:
                        raise Problem(
                            f"no such account: {account} (see slotguard admin list-accounts)"
                        )
                    chosen = account
                else:
                    found = await repo.list_accounts(s)
                    if not found:
                        raise Problem(
                            "no account yet: start `slotguard serve` once, or run "
                            "`slotguard admin create-account`"
                        )
                    if len(found) > 1:
                        raise Problem(
                            f"{len(found)} accounts: choose one with --account "
                            "(see slotguard admin list-accounts)"
                        )
                    chosen = found[0][0].id
                _, raw = await accounts.create_key(s, account_id=chosen, now=_now(), name=name)
            return chosen, raw
        finally:
            await db.dispose()

    upgrade_to_head(get_settings().database_url)
    chosen, raw = asyncio.run(run())
    typer.echo(f"account: {chosen}")
    typer.echo(f"admin key (shown once): {raw}")


@admin.command("rotate-secret-key")
def rotate_secret_key() -> None:
    """Re-encrypt every stored calendar credential with the first SLOTGUARD_SECRET_KEY."""
    from slotguard.calendars.credentials import secret_box
    from slotguard.services import calendars

    settings = get_settings()
    box = secret_box(settings.secret_key)
    if box is None:
        typer.echo("SLOTGUARD_SECRET_KEY is not set: nothing to encrypt with", err=True)
        raise typer.Exit(code=2)

    async def run() -> calendars.Rotation:
        db = Database.connect(settings.database_url, pool_size=1)
        try:
            async with db.write() as s:
                return await calendars.rotate_credentials(s, box)
        finally:
            await db.dispose()

    upgrade_to_head(settings.database_url)
    result = asyncio.run(run())
    typer.echo(f"{result.rotated} calendar credential(s) re-encrypted with the first key")
    if result.unreadable:
        typer.echo(
            "no configured key decrypts the credentials of: " + ", ".join(result.unreadable),
            err=True,
        )
        raise typer.Exit(code=1)


@admin.command("login-link")
def login_link(
    account: Annotated[
        str | None,
        typer.Option(
            help="Account id (acct_…); needed when there are several", metavar="ACCOUNT_ID"
        ),
    ] = None,
) -> None:
    """Print a one-time sign-in link to the owner's dashboard (valid 15 minutes)."""
    from slotguard.domain.errors import DomainError
    from slotguard.services import booking_pages
    from slotguard.store import pages_repo

    async def run() -> str | None:
        settings = get_settings()
        db = Database.connect(settings.database_url, pool_size=1)
        try:
            async with db.write() as s:
                chosen = account
                if chosen is None:
                    ids = await pages_repo.account_ids(s, 2)
                    if len(ids) != 1:
                        return None
                    chosen = ids[0]
                try:
                    return await booking_pages.create_login_link(s, chosen, now=_now())
                except DomainError:
                    return None
        finally:
            await db.dispose()

    settings = get_settings()
    upgrade_to_head(settings.database_url)
    raw = asyncio.run(run())
    if raw is None:
        which = f"no such account: {account}" if account else "give --account acct_…"
        typer.echo(f"slotguard: {which}", err=True)
        raise typer.Exit(code=1)
    base = (settings.public_url or "http://127.0.0.1:8000").rstrip("/")
    typer.echo(f"{base}/dashboard/login/{raw}")
    typer.echo("(one use, valid 15 minutes)")


# -- outbox (side effects) ---------------------------------------------------------------

outbox_cli = typer.Typer(
    help="The outbox of side effects (webhooks, emails).",
    **TYPER_OPTIONS,  # type: ignore[arg-type]
)
app.add_typer(outbox_cli, name="outbox")


@outbox_cli.command("retry-dead")
def outbox_retry_dead(
    kind: Annotated[
        str | None, typer.Option(help="Only this kind: webhook or email", metavar="KIND")
    ] = None,
    account: Annotated[
        str | None, typer.Option(help="Only this account (acct_…)", metavar="ACCOUNT_ID")
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(help="Only this webhook endpoint (whe_…)", metavar="ENDPOINT_ID"),
    ] = None,
) -> None:
    """Give dead messages a fresh set of attempts, starting now."""
    from slotguard.store import outbox_repo

    if kind is not None and kind not in outbox_repo.KINDS:
        typer.echo(f"--kind must be one of: {', '.join(outbox_repo.KINDS)}", err=True)
        raise typer.Exit(code=2)

    async def run() -> int:
        settings = get_settings()
        db = Database.connect(settings.database_url, pool_size=1)
        try:
            async with db.write() as s:
                return await outbox_repo.retry_dead(
                    s, now=_now(), account_id=account, kind=kind, endpoint_id=endpoint
                )
        finally:
            await db.dispose()

    upgrade_to_head(get_settings().database_url)
    count = asyncio.run(run())
    typer.echo(f"{count} dead message(s) scheduled for delivery")


@outbox_cli.command("stats")
def outbox_stats(
    account: Annotated[
        str | None, typer.Option(help="Only this account (acct_…)", metavar="ACCOUNT_ID")
    ] = None,
) -> None:
    """Pending, retrying, in-flight and dead messages per kind."""
    from slotguard.store import outbox_repo

    async def run() -> dict[str, outbox_repo.KindStats]:
        settings = get_settings()
        db = Database.connect(settings.database_url, pool_size=1)
        try:
            async with db.read() as s:
                return await outbox_repo.stats(s, account_id=account, now=_now())
        finally:
            await db.dispose()

    upgrade_to_head(get_settings().database_url)
    for kind, k in asyncio.run(run()).items():
        oldest = k.oldest_due_at.isoformat() if k.oldest_due_at else "-"
        typer.echo(
            f"{kind:8} pending={k.pending} retrying={k.retrying} in_flight={k.in_flight} "
            f"dead={k.dead} oldest_due={oldest}"
        )
