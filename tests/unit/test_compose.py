"""docker-compose.yml and the Dockerfile mirror the code: no docker engine runs here, so their structure is checked."""

import re
from pathlib import Path

import yaml

from config.settings import Settings
from workflows import search_attributes as sa

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_services_and_dependencies_exist():
    assert {"postgresql", "temporal", "temporal-ui", "worker", "intake"} <= set(SERVICES)
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_temporal_persists_in_postgresql():
    env = SERVICES["temporal"]["environment"]
    assert env["DB"].startswith("postgres") and env["POSTGRES_SEEDS"] == "postgresql"


def test_every_search_attribute_is_registered():
    command = " ".join(SERVICES["temporal-search-attributes"]["command"])
    for key in sa.ALL:
        assert f"--name {key.name} --type" in command


def test_quell_environment_variables_are_real_settings():
    fields = Settings.model_fields
    for name in ("worker", "intake"):
        for variable in SERVICES[name]["environment"]:
            if variable == "QUELL_CONFIG":
                continue
            path = variable.removeprefix("QUELL_").lower().split("__")
            assert path[0] in fields, f"{variable} names no setting"
            if len(path) > 1:
                assert path[1] in fields[path[0]].annotation.model_fields


def test_worker_and_intake_run_cli_commands_and_no_secret_is_inline():
    from workers.cli import app

    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert SERVICES["worker"]["command"][0] in commands
    assert SERVICES["intake"]["command"][0] in commands
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"(?m)^\s*\w*(PASSWORD|PWD|SECRET|TOKEN)\w*:\s*[^$\s]", text)


def test_published_ports_bind_to_loopback_only():
    for service in SERVICES.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:")


def test_the_image_holds_the_runtime_alone():
    copied = re.findall(r"(?m)^COPY\s+(\S+)", DOCKERFILE)
    assert copied and not {"emulator", "."} & {source.rstrip("/") or "." for source in copied}  # nor all of it
    installs = re.findall(r"pip install ([^&\n]*)", DOCKERFILE)
    assert installs and all(args.split()[-1] == "." for args in installs), "the image installs no extra"
