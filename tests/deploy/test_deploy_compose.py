"""docker-compose.yml agrees with the code: services, commands, ports, settings, health checks."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import yaml

from tests.deploy.rendering import REPO
from tests.deploy.service_catalog import BY_MODULE, OTEL_VARIABLES, SERVICES

COMPOSE = REPO / "docker-compose.yml"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _resolved(value: str) -> str:
    """${VAR:-default} as compose resolves it with VAR unset."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def _python_commands(command: Any) -> list[list[str]]:
    """Each `python -m <module> <args...>` that a compose command runs."""
    lines = [" ".join(command)] if isinstance(command, list) else [command]
    if isinstance(command, list) and command[:2] == ["sh", "-ec"]:
        lines = command[2].splitlines()
    found = []
    for line in lines:
        words = line.split()
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value python -m ...
            words = words[1:]
        if words[:2] == ["python", "-m"]:
            found.append(words[2:])
    return found


def test_the_four_services_the_infrastructure_and_the_optional_tracing_are_there() -> None:
    services = _compose()["services"]
    assert set(SERVICES) <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("postgres:")
    assert "mailpit" in services
    assert "8025:8025" in services["mailpit"]["ports"]
    assert services["otel-collector"]["profiles"] == ["tracing"]
    assert services["jaeger"]["profiles"] == ["tracing"]
    collector = REPO / services["otel-collector"]["volumes"][0].split(":")[0]
    assert collector.is_file()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_runs_its_own_module_on_the_code_s_port_with_a_readiness_check(
    name: str,
) -> None:
    service = SERVICES[name]
    spec = _compose()["services"][name]
    assert spec["command"] == ["python", "-m", service.module, "serve"]
    port = int(spec["environment"].get("FUNNEL_HTTP_PORT", service.port))
    assert spec["ports"] == [f"{port}:{port}"]
    check = " ".join(spec["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in check
    assert "/readyz" in service.route_paths()
    conditions = {k: v["condition"] for k, v in spec["depends_on"].items()}
    assert conditions["setup"] == "service_completed_successfully"
    assert conditions["kafka"] == conditions["postgres"] == "service_healthy"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_variable_is_a_setting_of_the_service_and_the_settings_accept_it(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = SERVICES[name]
    env = {k: _resolved(str(v)) for k, v in _compose()["services"][name]["environment"].items()}
    unknown = set(env) - service.env_names() - OTEL_VARIABLES
    assert not unknown, f"{name}: no such setting: {sorted(unknown)}"
    for key in [k for k in os.environ if k.startswith("FUNNEL_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = service.settings()
    assert settings.http_host == "0.0.0.0"
    assert settings.database_url.endswith("@postgres:5432/funnel")
    assert settings.kafka_bootstrap_servers == "kafka:9092"


def test_the_notifier_sends_to_the_smtp_catcher() -> None:
    services = _compose()["services"]
    env = services["notifier"]["environment"]
    assert env["FUNNEL_SMTP_HOST"] == "mailpit"
    assert env["FUNNEL_SMTP_PORT"] == "1025"  # mailpit's SMTP port
    assert "mailpit" in services["notifier"]["depends_on"]


def test_the_setup_step_migrates_every_service_and_creates_the_contract_topics() -> None:
    services = _compose()["services"]
    setup = services["setup"]
    assert setup["restart"] == "no"
    commands = _python_commands(setup["command"])
    migrated = {c[0] for c in commands if c[1:] == ["migrate"]}
    assert migrated == {s.module for s in SERVICES.values()}
    script = setup["command"][2]
    assert "ensure_topics('kafka:9092'" in script
    # Each service's role made by the owner first, then migrated as the owner, for that role.
    roles = [c for c in commands if c[0] == "funnel_servicekit.roles"]
    assert len(roles) == 1
    made = {pair.split("=", 1)[0] for pair in roles[0][1:]}
    assert made == {"funnel_intake", "funnel_tracker", "funnel_notifier", "funnel_reporting"}
    assert setup["environment"]["FUNNEL_MIGRATION_DATABASE_URL"].startswith("postgresql://funnel:")
    for name in SERVICES:
        url = services[name]["environment"]["FUNNEL_DATABASE_URL"]
        assert url.split("//", 1)[1].split(":", 1)[0] in made, name
        assert "FUNNEL_ADMIN_API_KEY" not in services[name]["environment"], name
    unknown = set(setup["environment"]) - SERVICES["lead-intake"].env_names() - OTEL_VARIABLES
    assert not unknown


def test_every_command_compose_runs_exists_in_the_service_cli(
    capsys: pytest.CaptureFixture[str],
) -> None:
    services = _compose()["services"]
    commands = [c for spec in services.values() for c in _python_commands(spec.get("command", []))]
    assert len(commands) >= 9
    for module, subcommand, *_ in commands:
        if module == "funnel_servicekit.roles":
            continue  # the kit's, not a service's (checked with the setup step)
        main = __import__(f"{BY_MODULE[module].module}.__main__", fromlist=["main"]).main
        with pytest.raises(SystemExit) as exited:
            main([subcommand, "--help"])
        assert exited.value.code == 0, f"python -m {module} {subcommand}"
    assert "usage:" in capsys.readouterr().out


def test_kafka_keeps_its_data_on_its_volume() -> None:
    kafka = _compose()["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"].split(",")
    mounts = [v.split(":")[1] for v in kafka["volumes"]]
    named_volumes = set(_compose()["volumes"])
    for directory in log_dirs:
        [mount] = [m for m in mounts if directory == m or directory.startswith(m + "/")]
        [volume] = [v.split(":")[0] for v in kafka["volumes"] if v.split(":")[1] == mount]
        assert volume in named_volumes, f"{directory} is not on a named volume"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_setting_whose_default_is_the_container_itself_is_set(name: str) -> None:
    """In a container 127.0.0.1 is the container: a setting that defaults to a loopback
    address (the database, Kafka, the SMTP relay, another service's API) must be given."""
    service = SERVICES[name]
    env = {k: _resolved(str(v)) for k, v in _compose()["services"][name]["environment"].items()}
    required = set()
    for field, info in service.settings.model_fields.items():
        default = str(info.get_default(call_default_factory=True))
        if field != "http_host" and re.search(r"(^|[/@])(127\.0\.0\.1|localhost)([:/]|$)", default):
            required.add(f"FUNNEL_{field.upper()}")
    assert "FUNNEL_DATABASE_URL" in required
    missing = required - set(env)
    assert not missing, f"{name}: settings left pointing at the container itself: {missing}"
    assert env.get("FUNNEL_HTTP_HOST") == "0.0.0.0"
