"""Dockerfile and compose.yaml stay consistent with the CLI and the settings.

No container engine is needed: the commands they run are parsed by the real `slotguard`
command line (unknown commands or options fail), every variable they set must be one that
config.py or the CLI reads, and the health check must hit a route the app serves.
`.ci/run` also builds the image when a container engine answers.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import httpx
import typer.main
import yaml
from pydantic import AliasChoices
from typer.testing import CliRunner

from slotguard.api.app import create_app
from slotguard.cli import app as cli_app
from slotguard.config import Settings
from slotguard.store.db import Database
from slotguard.store.migrate import upgrade_to_head_async

ROOT = Path(__file__).resolve().parents[2]
# Variables of the image's runtime, not of slotguard.
RUNTIME_VARIABLES = {"PATH", "PYTHONUNBUFFERED"}


def setting_variables() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif isinstance(alias, AliasChoices):
            names.update(c for c in alias.choices if isinstance(c, str))
    return names


def cli_variables() -> set[str]:
    names: set[str] = set()

    def walk(command: Any) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                names.add(envvar)
            elif envvar:
                names.update(envvar)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(cli_app))
    return names


KNOWN_VARIABLES = setting_variables() | cli_variables()


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the final stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n\s*", " ", text)
    lines = [line.strip() for line in text.splitlines()]
    instructions = [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def env_of(arguments: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(arguments))


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def assert_cli_accepts(argv: list[str]) -> None:
    """The real command line parses argv (every command and option exists)."""
    assert argv[0] == "slotguard", argv
    done = CliRunner().invoke(cli_app, [*argv[1:], "--help"], prog_name="slotguard")
    assert done.exit_code == 0, (argv, done.output)


def test_dockerfile_runs_slotguard_as_non_root_with_a_health_check() -> None:
    final = dockerfile()
    ops = [op for op, _ in final]
    user = [args for op, args in final if op == "USER"]
    assert user and user[-1] not in ("root", "0"), user
    assert ops.index("USER") < ops.index("CMD")
    cmd = exec_form(next(args for op, args in final if op == "CMD"))
    assert cmd == ["slotguard", "serve"]
    assert_cli_accepts(cmd)

    env: dict[str, str] = {}
    for op, args in final:
        if op == "ENV":
            env.update(env_of(args))
    unknown = set(env) - KNOWN_VARIABLES - RUNTIME_VARIABLES
    assert not unknown, f"Dockerfile sets variables slotguard does not read: {unknown}"
    assert env["SLOTGUARD_HOST"] == "0.0.0.0"
    exposed = next(args for op, args in final if op == "EXPOSE")
    assert exposed == env["SLOTGUARD_PORT"]


def healthcheck_path() -> str:
    health = next(args for op, args in dockerfile() if op == "HEALTHCHECK")
    probe = " ".join(exec_form(health.split(" CMD ", 1)[1]))
    assert "SLOTGUARD_PORT" in probe  # follows the port the server listens on
    paths = re.findall(r"http://127\.0\.0\.1:[^/]+(/\w+)", probe)
    assert len(paths) == 1, probe
    return paths[0]


async def test_healthcheck_path_answers_200_when_ready(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'health.db'}"
    await upgrade_to_head_async(url)
    db = Database.connect(url)
    app = create_app(Settings(database_url=url, embedded_worker=False), db=db)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get(healthcheck_path())
        assert r.status_code == 200, r.text
    finally:
        await db.dispose()


def test_dockerfile_installs_without_dev_tools_and_the_readme_uv() -> None:
    text = (ROOT / "Dockerfile").read_text()
    syncs = re.findall(r"uv sync ([^\n]+)", text)
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs), syncs
    pinned = set(re.findall(r"uv==([\d.]+)", text))
    readme_pins = set(re.findall(r"uv==([\d.]+)", (ROOT / "README.md").read_text()))
    assert len(pinned) == 1 and pinned == readme_pins, (pinned, readme_pins)


def test_compose_runs_api_worker_and_postgres_with_known_settings() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "api", "worker"}
    assert str(services["db"]["image"]).startswith("postgres:")

    api, worker = services["api"], services["worker"]
    assert api["command"][:2] == ["slotguard", "serve"]
    assert "--no-worker" in api["command"]  # the worker is its own service
    assert worker["command"] == ["slotguard", "worker"]
    for service in (api, worker):
        assert_cli_accepts(service["command"])
        unknown = set(service["environment"]) - KNOWN_VARIABLES
        assert not unknown, f"compose sets variables slotguard does not read: {unknown}"
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
    # One database for both, the compose PostgreSQL service.
    assert api["environment"]["DATABASE_URL"] == worker["environment"]["DATABASE_URL"]
    assert "@db:5432/" in api["environment"]["DATABASE_URL"]
    assert worker["image"] == api["image"] and "build" in api
    # The image's HTTP health check means nothing for the worker.
    assert worker["healthcheck"] == {"disable": True}
    port = api["environment"]["SLOTGUARD_PORT"]
    assert any(str(p).endswith(f":{port}") for p in api["ports"])


def test_variables_the_files_set_are_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    used: set[str] = set()
    for op, args in dockerfile():
        if op == "ENV":
            used.update(env_of(args))
    for name in ("api", "worker"):
        used.update(compose()["services"][name]["environment"])
    missing = {n for n in used - RUNTIME_VARIABLES if f"`{n}`" not in readme}
    assert not missing, f"README's configuration table lacks {missing}"
