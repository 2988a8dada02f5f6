"""docker-compose.yaml, .env.example and docker/Dockerfile hold together (no Docker engine needed).

The compose file is interpolated with .env.example the way Compose does (``${VAR:-default}``,
``${VAR:?error}``, ``$$``), then checked: the services of Airflow's official layout plus
PostgreSQL, Redis, MinIO and the bucket job; commands that exist; one image for every Airflow
service; env that points at the right services; the S3 connection; health checks, volumes and
``depends_on`` conditions that can be met.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from urllib.parse import urlparse

import pytest
import yaml

from recsys.storage import storage_options_from_connection
from tests.conftest import REPO, in_airflow_process

COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker",
    "airflow-triggerer": "triggerer",
}
ONE_SHOT = {"airflow-init", "minio-create-bucket", "recsys-load-sample"}
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (the subset this file uses)."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        if op in (":-", "-"):
            return value if value else arg
        if op in (":?", "?"):
            if not value:
                raise ValueError(f"{name}: {arg}")
            return value
        return value or ""

    return _VAR.sub(sub, text)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env_example()))


def airflow_services(compose: dict) -> dict[str, dict]:
    return {n: s for n, s in compose["services"].items() if s.get("build")}


def test_required_secrets_fail_loudly_without_env():
    with pytest.raises(ValueError, match="set [A-Z_]+ in .env"):
        interpolate(COMPOSE.read_text(), {})
    # Every variable the file requires (:?) or uses is documented in .env.example.
    used = {m.group(1) for m in _VAR.finditer(COMPOSE.read_text()) if m.group(1)}
    assert used - set(env_example()) <= {"AIRFLOW_PROJ_DIR", "MINIO_IMAGE"}


def test_services_follow_airflows_layout(compose):
    services = compose["services"]
    assert set(AIRFLOW_COMMANDS) | ONE_SHOT | {"postgres", "redis", "minio"} <= set(services)
    for name, command in AIRFLOW_COMMANDS.items():
        assert services[name]["command"] == command, name
    # Every Airflow service runs the one image built from docker/Dockerfile.
    images = {(s["image"], s["build"]["dockerfile"]) for s in airflow_services(compose).values()}
    assert images == {("recsys-airflow:latest", "docker/Dockerfile")}
    assert (REPO / "docker" / "Dockerfile").is_file()
    # Nothing is pip-installed at container start.
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in COMPOSE.read_text()


def test_every_long_running_service_has_a_health_check_and_restart(compose):
    for name, service in compose["services"].items():
        if name in ONE_SHOT or "profiles" in service and name != "airflow-worker-gpu":
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert service.get("restart") == "always", name


def test_depends_on_conditions_can_be_met(compose):
    services = compose["services"]
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = cond["condition"]
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name}: {dep} has no health check"
            elif condition == "service_completed_successfully":
                assert dep in ONE_SHOT, f"{name}: {dep} never completes"
            else:
                assert condition == "service_started", condition
    # Nothing Airflow starts before the database is migrated; workers need the bucket.
    for name in AIRFLOW_COMMANDS:
        assert services[name]["depends_on"]["airflow-init"]["condition"].endswith("successfully")
    assert "minio-create-bucket" in services["airflow-worker"]["depends_on"]


def test_volumes_exist(compose):
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                if source.rstrip("/").endswith(("logs", "config")):
                    continue  # created by airflow-init, git-ignored
                assert (REPO / source).is_dir(), f"{name}: {source} missing"
            else:
                assert source in named, f"{name}: volume {source} not declared"
            assert target.startswith("/"), target
    assert {"postgres-db-volume", "minio-data-volume"} <= named


def test_airflow_env_points_at_the_right_services(compose):
    env_file = env_example()
    services = compose["services"]
    for name, service in airflow_services(compose).items():
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        db = urlparse(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        pg = services["postgres"]["environment"]
        assert db.scheme == "postgresql+psycopg2" and db.hostname == "postgres"
        assert (db.username, db.password, db.path[1:]) == (
            pg["POSTGRES_USER"],
            pg["POSTGRES_PASSWORD"],
            pg["POSTGRES_DB"],
        )
        assert env_file["POSTGRES_PASSWORD"] == db.password
        assert urlparse(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the image has psycopg2.
        backend = urlparse(env["AIRFLOW__CELERY__RESULT_BACKEND"])
        assert backend.scheme == "db+postgresql+psycopg2" and backend.hostname == "postgres"
        api = urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert api.hostname == "airflow-apiserver" and api.path == "/execution/"
        assert f"127.0.0.1:{api.port}:{api.port}" in services["airflow-apiserver"]["ports"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == env_file["AIRFLOW_JWT_SECRET"]
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith(
            "/opt/airflow/config/"
        )


PARSE_CONNECTION = r"""
import json, sys
from airflow.models.connection import Connection
conn = Connection.from_json(sys.argv[1], conn_id=sys.argv[2])  # how Airflow reads the variable
print("RESULT " + json.dumps({"conn_type": conn.conn_type, "login": conn.login,
                              "password": conn.password, "extra": conn.extra_dejson}))
"""


def test_s3_connection_string_is_a_valid_airflow_connection_to_minio(compose, tmp_path):
    env_file = env_example()
    services = compose["services"]
    raws = set()
    for name, service in airflow_services(compose).items():
        env = service["environment"]
        conn_id = env["RECSYS_STORAGE_CONN_ID"]
        raws.add((env[f"AIRFLOW_CONN_{conn_id.upper()}"], conn_id))
        # The storage root is in the bucket the one-shot job creates.
        bucket = urlparse(env["RECSYS_STORAGE_URL"]).netloc
        assert bucket == services["minio-create-bucket"]["environment"]["RECSYS_BUCKET"], name
    assert len(raws) == 1  # one connection for every component
    raw, conn_id = raws.pop()
    conn = in_airflow_process(PARSE_CONNECTION, raw, conn_id, tmp_path=tmp_path)
    assert conn["conn_type"] == "aws"
    assert (conn["login"], conn["password"]) == (
        env_file["MINIO_ROOT_USER"],
        env_file["MINIO_ROOT_PASSWORD"],
    )
    endpoint = urlparse(conn["extra"]["endpoint_url"])
    assert endpoint.hostname == "minio"
    assert f"127.0.0.1:{endpoint.port}:{endpoint.port}" in services["minio"]["ports"]
    # recsys turns it into S3 options with the endpoint and the credentials.
    options = storage_options_from_connection(conn["login"], conn["password"], conn["extra"])
    assert options["client_kwargs"]["endpoint_url"] == "http://minio:9000"
    assert options["key"] == env_file["MINIO_ROOT_USER"]
    assert 'mc mb --ignore-existing "recsys/${RECSYS_BUCKET}"' in "\n".join(
        services["minio-create-bucket"]["command"]
    )
    assert (
        services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == env_file["MINIO_ROOT_PASSWORD"]
    )


def test_sample_loader_uses_the_cli_and_paths_of_the_image(compose):
    loader = compose["services"]["recsys-load-sample"]
    script = "\n".join(loader["command"])
    assert "recsys replay --source movielens --data-dir /opt/recsys/data/ml-latest-small" in script
    assert "airflow dags unpause recsys_nightly" in script
    assert loader["environment"]["RECSYS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "COPY --chown=airflow:0 data/ml-latest-small /opt/recsys/data/ml-latest-small" in (
        DOCKERFILE.read_text()
    )


def test_dockerfile_builds_from_the_official_image_and_the_lock():
    text = DOCKERFILE.read_text()
    lock = dict(
        line.split("==", 1)
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if "==" in line
    )
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, flags=re.M))
    assert re.search(
        r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$", text, re.M
    )
    assert args["AIRFLOW_VERSION"] == lock["apache-airflow"]
    assert args["PYTHON_VERSION"] == "3.11"  # the lock's Python
    # Installed at build time (RUN), from the lock, with Airflow held at its version.
    assert re.search(r"^RUN .*requirements\.lock", text, re.M)
    assert '"apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements.txt' in text
    for source in re.findall(r"^COPY (?:--chown=\S+ )?(.+) \S+$", text, re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"COPY source {path} missing"
    # Installs run as the image's airflow user (the official image's rule), not as root.
    assert re.findall(r"^USER (\S+)$", text, re.M)[-1] == "airflow"
    # The build context leaves out what must not be baked in.
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git"} <= set(ignored)


@pytest.mark.skipif(not shutil.which("docker"), reason="docker CLI not installed")
def test_docker_compose_config_accepts_the_file(tmp_path):
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("docker compose plugin not installed")
    env = tmp_path / ".env"
    env.write_text(ENV_EXAMPLE.read_text())
    proc = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(COMPOSE),
            "--env-file",
            str(env),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    assert set(AIRFLOW_COMMANDS) <= set(config["services"])


# -- production secrets (issue 18, case 8) ----------------------------------------------------
SECRETS = (
    "_AIRFLOW_WWW_USER_PASSWORD",
    "POSTGRES_PASSWORD",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_FERNET_KEY",
    "MINIO_ROOT_PASSWORD",
)


def test_every_secret_is_required_without_a_default():
    text = COMPOSE.read_text()
    for name in SECRETS:
        uses = [m for m in _VAR.finditer(text) if m.group(1) == name]
        assert uses, f"{name} is not used"
        assert all(m.group(2) == ":?" for m in uses), f"{name} has a default somewhere"
        env = {k: v for k, v in env_example().items() if k != name}
        with pytest.raises(ValueError, match=name):
            interpolate(text, env)
    assert "airflow}@postgres" not in text and ":-airflow}" not in text.replace(
        "_AIRFLOW_WWW_USER_USERNAME:-airflow}", ""
    )


def _secrets_check(compose: dict) -> str:
    command = compose["services"]["airflow-init"]["command"][-1]
    begin = command.index("# secrets-check: begin")
    end = command.index("# secrets-check: end")
    return command[begin:end]


def _run_check(compose: dict, env: dict[str, str]) -> subprocess.CompletedProcess:
    import os
    import sys
    from pathlib import Path

    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # python with cryptography
    return subprocess.run(
        ["bash", "-c", _secrets_check(compose)],
        env={"PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_refuses_the_placeholders_and_a_bad_fernet_key(compose):
    from cryptography.fernet import Fernet

    placeholders = {k: env_example()[k] for k in SECRETS}
    out = _run_check(compose, placeholders)
    assert out.returncode == 1 and "placeholder" in out.stderr
    real = {k: f"s3cret-{i}-{k.lower()}" for i, k in enumerate(SECRETS)}
    real["AIRFLOW_FERNET_KEY"] = Fernet.generate_key().decode()
    assert _run_check(compose, real).returncode == 0, _run_check(compose, real).stderr
    for name in SECRETS:
        out = _run_check(compose, {**real, name: placeholders[name]})
        assert out.returncode == 1 and name in out.stderr, name
    out = _run_check(compose, {**real, "AIRFLOW_FERNET_KEY": "not-a-fernet-key"})
    assert out.returncode == 1 and "not a Fernet key" in out.stderr
    # the init service sees the raw secrets it checks
    init_env = compose["services"]["airflow-init"]["environment"]
    assert all(init_env[name] == placeholders[name] for name in SECRETS)


def test_ui_and_minio_listen_on_loopback_unless_told_otherwise():
    text = COMPOSE.read_text()
    default = yaml.safe_load(interpolate(text, env_example()))["services"]
    assert default["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]
    assert all(p.startswith("127.0.0.1:") for p in default["minio"]["ports"])
    env = {**env_example(), "AIRFLOW_UI_BIND": "0.0.0.0"}
    told = yaml.safe_load(interpolate(text, env))["services"]
    assert told["airflow-apiserver"]["ports"] == ["0.0.0.0:8080:8080"]
    for name, service in default.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
