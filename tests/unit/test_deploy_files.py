"""The deployment files agree with each other and with the code, without a broker: the Compose
file (Kafka in KRaft mode, the worker built from the Dockerfile, Prometheus, Grafana), the
Prometheus and Grafana provisioning, and the dashboards, whose every queried metric and label the
code declares (tests/integration/test_deploy.py checks a running worker exports them)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from model_monitoring.streams.metrics import Metrics
from tests.support.dashboards import (
    DASHBOARD_FILES,
    DASHBOARDS,
    PROMETHEUS_SYNTHETIC,
    all_panels,
    dashboard_queries,
    exported_names,
    grafana_queries,
    grafana_variables,
    load_dashboard,
    metric_names,
    queried_names,
    selectors,
    substitute,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.kafka.yml"
WEB_PORT = 6066


# ------------------------------------------------------------------ helpers
def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or as a list of KEY=VALUE."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def interpolation_default(value: str) -> str:
    """`${VAR:-default}` -> default (what Compose uses when VAR is unset); plain values as is."""
    m = re.fullmatch(r"\$\{\w+:?-(.*)\}", value)
    return m.group(1) if m else value


def bind_mounts(svc: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path in the repo, container path) of every bind mount (short or long syntax)."""
    out = []
    for volume in svc.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                out.append((ROOT / volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out.append(((ROOT / source).resolve(), target))
    return out


def host_path_of(svc: dict[str, Any], container_path: str) -> Path | None:
    """The repo path a container path of a service comes from, through its bind mounts."""
    for host, target in bind_mounts(svc):
        target = target.rstrip("/")
        if container_path == target or container_path.startswith(target + "/"):
            return host / container_path[len(target):].lstrip("/")
    return None


def metric_label_names() -> dict[str, set[str]]:
    """Series name -> the label names the code declares for it (histograms add `le`)."""
    from prometheus_client.metrics import MetricWrapperBase

    out: dict[str, set[str]] = {}
    metrics = Metrics()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        labels = set(value._labelnames)  # noqa: SLF001 - the declared label names
        kind = value._type  # noqa: SLF001
        if kind == "counter":
            out[value._name + "_total"] = labels  # noqa: SLF001
        elif kind == "histogram":
            for suffix in ("_sum", "_count"):
                out[value._name + suffix] = labels  # noqa: SLF001
            out[value._name + "_bucket"] = labels | {"le"}  # noqa: SLF001
        else:
            out[value._name] = labels  # noqa: SLF001
    return out


# ------------------------------------------------------------------ the Compose file
def test_compose_has_the_four_services_and_no_zookeeper() -> None:
    services = compose()["services"]
    assert {"kafka", "worker", "prometheus", "grafana"} <= set(services)
    assert not [n for n, s in services.items()
                if "zookeeper" in n.lower() or "zookeeper" in str(s.get("image", "")).lower()]


def test_kafka_runs_in_kraft_mode() -> None:
    kafka = service("kafka")
    env = environment(kafka)
    assert kafka["image"].startswith("apache/kafka:")
    roles = {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert roles == {"broker", "controller"}
    assert not any("ZOOKEEPER" in k for k in env)
    node_id = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters.startswith(f"{node_id}@kafka:")
    controller_port = voters.rsplit(":", 1)[1]
    listeners = dict(reversed(item.split("://")) for item in env["KAFKA_LISTENERS"].split(","))
    assert listeners[f":{controller_port}"] == env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert "PLAINTEXT" in listeners.values()
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in env["KAFKA_ADVERTISED_LISTENERS"]
    protocol_map = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners.values()) <= set(protocol_map)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "PLAINTEXT"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # the image formats its storage with this id: a base64 UUID (22 characters, 16 bytes)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    assert "healthcheck" in kafka


def test_worker_is_built_from_the_dockerfile_and_points_at_kafka() -> None:
    worker = service("worker")
    build = worker["build"]
    context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
    assert dockerfile.is_file()
    env = environment(worker)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["MODEL_MONITORING_BROKER_PROFILE"] == "kafka"
    assert env["MODEL_MONITORING_WEB_HOST"] == "0.0.0.0"
    assert env.get("MODEL_MONITORING_WEB_PORT", str(WEB_PORT)) == str(WEB_PORT)
    secret = env["MODEL_MONITORING_JWT_SECRET"]
    assert secret.startswith("${MODEL_MONITORING_JWT_SECRET"), "the secret must come from the environment"
    default = interpolation_default(secret)
    assert len(default.encode()) >= 32 and "dev" in default
    depends = worker["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    data_dir = env["MODEL_MONITORING_DATA_DIR"]
    assert any(str(v).split(":")[1] == data_dir for v in worker["volumes"]), "the data dir is a volume"


def test_dockerfile_builds_a_non_root_worker_image() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$|^FROM python:3\.11-slim", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(rf"^EXPOSE\s+{WEB_PORT}\b", text, re.M)
    assert re.search(r"^HEALTHCHECK .*", text, re.M) and "/healthz" in text
    assert re.search(r'^ENTRYPOINT \["model-monitoring"\]', text, re.M)
    assert re.search(r'^CMD \["worker"\]', text, re.M)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and ".git" in ignored


def test_every_mounted_file_exists_in_the_repo() -> None:
    mounts = [(name, host) for name, svc in compose()["services"].items()
              for host, _ in bind_mounts(svc)]
    assert mounts, "the Compose file mounts the Prometheus and Grafana configuration"
    missing = [f"{name}: {host}" for name, host in mounts if not host.exists()]
    assert not missing, missing
    for name, host in mounts:
        assert ROOT in host.parents, f"{name} mounts {host}, outside the repo"


def test_prometheus_scrapes_the_worker() -> None:
    prometheus = service("prometheus")
    config_path = host_path_of(prometheus, "/etc/prometheus/prometheus.yml")
    assert config_path is not None and config_path == ROOT / "deploy" / "prometheus.yml"
    config = load_yaml(config_path)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["model-monitoring"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert f"worker:{WEB_PORT}" in targets
    worker_ports = [str(p) for p in service("worker").get("ports", [])]
    assert any(p.endswith(f":{WEB_PORT}") for p in worker_ports)
    # panels that select on the scrape job name the one configured here
    for name in DASHBOARD_FILES:
        for place, expr in dashboard_queries(load_dashboard(name)):
            for job_name in re.findall(r'\bup\{[^}]*\bjob="([^"]+)"', expr):
                assert job_name in jobs, f"{place}: no scrape job {job_name!r}"


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    grafana = service("grafana")
    env = environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    provisioning = host_path_of(grafana, "/etc/grafana/provisioning")
    assert provisioning == ROOT / "deploy" / "grafana" / "provisioning"

    providers = load_yaml(provisioning / "dashboards" / "dashboards.yml")["providers"]
    folders = [host_path_of(grafana, p["options"]["path"]) for p in providers]
    assert DASHBOARDS in folders
    for name in DASHBOARD_FILES:
        assert (DASHBOARDS / name).is_file()
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        home_file = host_path_of(grafana, home)
        assert home_file is not None and home_file.is_file()

    datasources = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    (prom,) = [d for d in datasources if d["type"] == "prometheus"]
    assert prom["url"] == "http://prometheus:9090"
    uids = {target.get("datasource", {}).get("uid")
            for name in DASHBOARD_FILES for panel in all_panels(load_dashboard(name))
            for target in panel.get("targets", [])}
    assert uids == {prom["uid"]}, "every panel queries the provisioned datasource by its uid"


# ------------------------------------------------------------------ the dashboards
@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_is_a_valid_grafana_model(name: str) -> None:
    board = load_dashboard(name)
    assert board["uid"] and board["title"] and 36 <= board["schemaVersion"] <= 41
    panels = list(all_panels(board))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(pos) and pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["refId"] and target["expr"].strip()
            assert target["datasource"]["type"] == "prometheus"
            assert metric_names(target["expr"]), f"{panel['title']}: no metric in {target['expr']!r}"


def test_batch_jobs_dashboard_shows_the_job_duration() -> None:
    exprs = [expr for _, expr in dashboard_queries(load_dashboard("batch-jobs.json"))]
    assert any("histogram_quantile" in e
               and 'batch_job_duration_seconds_bucket{job_name="model-monitoring"}' in e for e in exprs)
    assert any("batch_job_triggers_total" in e and "source" in e for e in exprs)


def test_metric_name_extraction() -> None:
    quantile = 'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job="x", q=~"$v"}[$__rate_interval])))'
    assert metric_names(quantile) == {"a_bucket"}
    assert metric_names("sum(increase(b_sum[1h])) / sum(increase(b_count[1h])) > 0") == {"b_sum", "b_count"}
    assert metric_names("last_over_time((x_total > 0)[30d:5m]) offset 1d") == {"x_total"}
    assert metric_names("topk(15, max by (tenant, model) (g{tenant=~\"$tenant\"})) or vector(0)") == {"g"}
    assert metric_names("sum(up) without (instance)") == {"up"}
    assert selectors('rate(a{job="x", le!="1"}[5m])') == [("a", {"job", "le"})]
    assert exported_names("# TYPE c_total counter\n# TYPE h histogram\n# TYPE g gauge\n") == {
        "c", "c_total", "c_created", "h_bucket", "h_sum", "h_count", "h_created", "g"}


def test_dashboards_use_only_declared_metrics_and_labels() -> None:
    """Against the registry the code builds (no worker): names and matcher label names."""
    exported = exported_names(generate_latest(Metrics().registry).decode())
    unknown = {m: sorted(w) for m, w in queried_names().items()
               if m not in exported and m not in PROMETHEUS_SYNTHETIC}
    assert not unknown, f"dashboards query metrics the code does not declare: {unknown}"
    labels = metric_label_names()
    wrong = []
    for name in DASHBOARD_FILES:
        for place, expr in dashboard_queries(load_dashboard(name)):
            for metric, matched in selectors(expr):
                if metric in labels and not matched <= labels[metric]:
                    wrong.append(f"{place}: {metric} has no label {sorted(matched - labels[metric])}")
    board = load_dashboard("model-monitoring.json")
    for var in board["templating"]["list"]:
        m = re.fullmatch(r"\s*label_values\((\w+).*,\s*(\w+)\)\s*", var["query"]["query"])
        if m and m.group(1) in labels and m.group(2) not in labels[m.group(1)]:
            wrong.append(f"${var['name']}: {m.group(1)} has no label {m.group(2)}")
    assert not wrong, wrong


def test_series_with_known_labels_start_at_zero() -> None:
    """increase() does not count a series' first sample, so the run, trigger, alert, join-expiry,
    dead-letter and mispartitioned series are exported at 0 before their first count
    (tests/integration/test_prometheus_dashboards.py shows the stats it fixes)."""
    registry = Metrics(input_topics=("in",), joined_topics=("in",)).registry
    for name, labels in [
            ("batch_job_duration_seconds_count", {"job_name": "model-monitoring"}),
            ("model_monitoring_runs_total", {"status": "completed"}),
            ("model_monitoring_runs_total", {"status": "failed"}),
            ("batch_job_triggers_total", {"job": "model-monitoring", "source": "topic"}),
            ("model_monitoring_alerts_published_total", {"type": "drift", "severity": "critical"}),
            ("model_monitoring_alerts_published_total", {"type": "degraded", "severity": "degraded"}),
            ("model_monitoring_join_expired_total", {"state": "unmatched_prediction"}),
            ("model_monitoring_dlq_messages_total", {"topic": "in", "reason": "schema"}),
            ("model_monitoring_mispartitioned_records_total", {"topic": "in"})]:
        assert registry.get_sample_value(name, labels) == 0, (name, labels)


def test_grafana_variables_are_all_replaced() -> None:
    """Each dashboard's queries with Grafana's values for its variables hold no `$` any more,
    and a variable without a value is an error, not a query sent with `$name` in it."""
    for name in DASHBOARD_FILES:
        board = load_dashboard(name)
        variables = grafana_variables(board, scrape_interval_s=15)
        assert variables["__rate_interval"] == "60s"
        for query in grafana_queries(board):
            assert "$" not in substitute(query.expr, variables), query.where
    assert grafana_variables(load_dashboard("batch-jobs.json"), 15)["__range"] == "2592000s"
    assert substitute('x{t=~"${tenant}"}[$__range]', {"tenant": ".*", "__range": "1d"}) == 'x{t=~".*"}[1d]'
    with pytest.raises(AssertionError, match=r"\$model"):
        substitute('x{m=~"$model"}', {})
    nested = {"panels": [{"title": "row", "panels": [{"title": "inside", "panels": [{"title": "deeper"}]}]},
                         {"title": "after"}]}
    assert [p["title"] for p in all_panels(nested)] == ["row", "inside", "deeper", "after"]
