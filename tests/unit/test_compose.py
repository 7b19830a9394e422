"""docker-compose.yml and the Dockerfile mirror the code: no docker engine runs here, so their structure is checked.

The same topology runs without containers in tests/e2e/test_deployment_topology.py.
"""

import json
import re
from pathlib import Path

import yaml

from config.settings import Settings
from workflows import search_attributes as sa

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
README = (ROOT / "README.md").read_text()


def _default(value: str) -> str:
    """A value as compose interpolates it when no variable is set: `${NAME:-default}` → default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def _script(service: str) -> str:
    return " ".join(SERVICES[service]["command"]).replace("$$", "$")


def test_services_and_dependencies_exist():
    assert {"postgresql", "temporal-schema", "temporal", "temporal-setup", "temporal-ui", "worker", "intake"} <= set(SERVICES)
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_temporal_is_the_server_image_after_its_schema_and_not_auto_setup():
    assert "auto-setup" not in (ROOT / "docker-compose.yml").read_text()
    server, tools = SERVICES["temporal"]["image"], SERVICES["temporal-schema"]["image"]
    assert server.startswith("temporalio/server:") and tools.startswith("temporalio/admin-tools:")
    assert server.split(":")[1] == tools.split(":")[1] == SERVICES["temporal-setup"]["image"].split(":")[1]
    assert SERVICES["temporal"]["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    assert SERVICES["temporal-schema"]["depends_on"]["postgresql"]["condition"] == "service_healthy"


def test_the_schema_step_creates_and_migrates_both_databases():
    script = _script("temporal-schema")
    assert "temporal-sql-tool --plugin postgres12 --ep postgresql -p 5432 -u temporal" in script
    assert "SQL_PASSWORD" in SERVICES["temporal-schema"]["environment"]
    for database, schema in (("temporal", "temporal"), ("temporal_visibility", "visibility")):
        assert f"$sql --db {database} create" in script
        assert f"$sql --db {database} setup-schema -v 0.0" in script
        assert f"$sql --db {database} update-schema -d /etc/temporal/schema/postgresql/v12/{schema}/versioned" in script


def test_temporal_persists_in_postgresql_and_listens_beyond_its_container():
    env = SERVICES["temporal"]["environment"]
    assert env["DB"] == "postgres12" and env["POSTGRES_SEEDS"] == "postgresql" and env["POSTGRES_USER"] == "temporal"
    assert env["BIND_ON_IP"] == "0.0.0.0"
    [mount] = SERVICES["temporal"]["volumes"]
    source, target, _ = mount.split(":")
    assert target == env["DYNAMIC_CONFIG_FILE_PATH"]
    assert yaml.safe_load((ROOT / source).read_text())["frontend.enableUpdateWorkflowExecution"] == [
        {"value": True, "constraints": {}}]


def test_setup_creates_the_namespace_and_registers_every_search_attribute():
    script = _script("temporal-setup")
    assert SERVICES["temporal-setup"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert 'temporal operator namespace create -n "$QUELL_NAMESPACE" --retention "$QUELL_RETENTION"' in script
    flags = sa.dev_server_flags()
    for name_and_type in flags[1::2]:  # "QuellTenant=Keyword", ... as the dev server registers them
        assert f" {name_and_type} " in script or f" {name_and_type};" in script
    assert 'temporal operator search-attribute create -n "$QUELL_NAMESPACE" --name "$name"' in script
    for name in ("worker", "intake"):
        assert SERVICES[name]["depends_on"]["temporal-setup"]["condition"] == "service_completed_successfully"


def test_the_ui_decodes_through_the_intake_codec_with_the_analysts_token():
    ui = SERVICES["temporal-ui"]["environment"]
    endpoint = _default(ui["TEMPORAL_CODEC_ENDPOINT"])
    assert endpoint == "http://localhost:8088/codec"
    assert any(port.split(":")[1] == endpoint.rsplit(":", 1)[1].split("/")[0] for port in SERVICES["intake"]["ports"])
    assert _default(ui["TEMPORAL_CODEC_PASS_ACCESS_TOKEN"]) == "true"
    assert ui["TEMPORAL_AUTH_TYPE"] == "oidc" and "/auth/sso/callback" in ui["TEMPORAL_AUTH_CALLBACK_URL"]
    [ui_port] = SERVICES["temporal-ui"]["ports"]
    origins = json.loads(_default(SERVICES["intake"]["environment"]["QUELL_INTAKE__CODEC_CORS_ORIGINS"]))
    assert origins == [f"http://localhost:{ui_port.split(':')[1]}"]


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


def test_worker_and_intake_take_their_secrets_from_an_env_file_the_readme_describes():
    for name in ("worker", "intake"):
        assert SERVICES[name]["env_file"] == "./secrets/quell.env"
    assert "secrets/quell.env" in README
    for variable in ("QUELL_CODEC__CURRENT", "QUELL_CODEC__KEYS__", "QUELL_INTAKE__API_TOKENS"):
        assert variable in README
    assert "/secrets/" in (ROOT / ".gitignore").read_text().split()


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
