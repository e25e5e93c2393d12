"""Observability as code (deploy/k8s/monitoring, in the prod overlay): every service and worker
is scraped, the runbook's alerts pass their promtool unit tests (firing and quiet), every
expression of the rules and of the dashboards parses (promtool) and names only metrics the
code exports, and each service's dashboard shows the golden signals, lag and throughput."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.rendering import K8S, REPO, named, of_kind, render
from tests.deploy.traffic import INTERFACES

MONITORING = K8S / "monitoring"
RUNBOOK = (REPO / "docs" / "operations.md").read_text()
# Modules that define the services' Prometheus metrics (imported: they register them).
METRIC_MODULES = (
    "funnel_servicekit.metrics",
    "funnel_servicekit.gc_pauses",
    "funnel_servicekit.load_shedding",
    "lead_intake.intake_metrics",
    "notifier.metrics",
)
# Metrics from elsewhere: the process collector of prometheus_client, Strimzi's Kafka exporter.
FOREIGN_METRICS = {"process_cpu_seconds_total", "kafka_consumergroup_lag"}
ALERTS = {
    "FunnelConsumerLagGrowing",
    "FunnelDeadLetters",
    "FunnelOutboxBacklogOld",
    "FunnelHighErrorRate",
    "FunnelGcPauses",
    "FunnelPipelineSlow",
    "FunnelTouchSendFailures",
    "FunnelWorkerRestarts",
}


def promtool() -> str:
    """promtool as scripts/bootstrap.sh installs it (next to the venv's python), or on PATH."""
    beside = Path(sys.executable).parent / "promtool"
    found = str(beside) if beside.is_file() else shutil.which("promtool")
    assert found, "promtool is missing: run scripts/bootstrap.sh"
    return found


def _rule(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return named(manifests, "PrometheusRule", "funnel")


def _exported_metrics() -> set[str]:
    from prometheus_client import REGISTRY

    for module in METRIC_MODULES:
        importlib.import_module(module)
    names = set(REGISTRY._names_to_collectors)  # every sample name: _total, _bucket, ...
    return names | FOREIGN_METRICS


def _metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names an expression selects."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_labels = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels
    )
    names = set(
        re.findall(
            r"\b([a-z_][a-z0-9_]*:[a-z0-9_:]+|[a-z_][a-z0-9_]*_[a-z0-9_]+)\b", without_labels
        )
    )
    functions = {"histogram_quantile", "humanize_percentage"}
    return {n for n in names if n not in functions}


def _promtool_check(tmp_path: Path, exprs: dict[str, str]) -> None:
    rules = {
        "groups": [
            {
                "name": "check",
                "rules": [{"record": f"check:{k}", "expr": e} for k, e in exprs.items()],
            }
        ]
    }
    path = tmp_path / "exprs.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_and_worker_pod_is_scraped_with_its_service_label() -> None:
    manifests = render("prod")
    monitors = of_kind(manifests, "PodMonitor")
    for deployment in of_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/part-of") != "funnel":
            continue
        ports = {
            p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        scraping = [
            m
            for m in monitors
            if all(
                labels.get(k) == v
                for k, v in m["spec"]["selector"].get("matchLabels", {"-": "-"}).items()
            )
        ]
        assert len(scraping) == 1, deployment["metadata"]["name"]
        [endpoint] = scraping[0]["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"
        targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
        assert targets["service"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
        assert targets["component"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]
    kafka = [m for m in monitors if m["metadata"]["name"] == "funnel-kafka"]
    assert kafka, "the Strimzi metrics are not scraped"


def test_the_alert_rules_pass_their_promtool_unit_tests(tmp_path: Path) -> None:
    groups = _rule(render("prod"))["spec"]["groups"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(MONITORING / "rules-tests.yaml", tmp_path / "rules-tests.yaml")
    check = subprocess.run(
        [promtool(), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run(
        [promtool(), "test", "rules", "rules-tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rule_tests_fail_when_a_threshold_is_loosened(tmp_path: Path) -> None:
    """The test of the tests: the dead-letter alert that needs 5 records never fires."""
    groups = _rule(render("prod"))["spec"]["groups"]
    for rule in groups[0]["rules"]:
        if rule.get("alert") == "FunnelDeadLetters":
            rule["expr"] = rule["expr"].replace("> 0", "> 5")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(MONITORING / "rules-tests.yaml", tmp_path / "rules-tests.yaml")
    result = subprocess.run(
        [promtool(), "test", "rules", "rules-tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "FunnelDeadLetters" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet_and_is_in_the_runbook() -> None:
    rules = _rule(render("prod"))["spec"]["groups"][0]["rules"]
    alerts = {r["alert"] for r in rules if "alert" in r}
    assert alerts == ALERTS
    tests = yaml.safe_load((MONITORING / "rules-tests.yaml").read_text())["tests"]
    for alert in alerts:
        firing = quiet = False
        for case in tests:
            services = {
                m.group(1)
                for s in case["input_series"]
                if (m := re.search(r'service="([^"]+)"', s["series"]))
            }
            for check in case.get("alert_rule_test", []):
                if check["alertname"] != alert:
                    continue
                fired = {a["exp_labels"].get("service") for a in check["exp_alerts"]}
                firing |= bool(check["exp_alerts"])
                quiet |= not check["exp_alerts"] or bool(services - fired)
        assert firing, f"{alert}: no test where it fires"
        assert quiet, f"{alert}: no test where it stays quiet"
        assert f"`{alert}`" in RUNBOOK, f"{alert} is not in docs/operations.md"


def test_rules_name_only_metrics_the_code_exports(tmp_path: Path) -> None:
    exported = _exported_metrics()
    rules = _rule(render("prod"))["spec"]["groups"][0]["rules"]
    recorded = {r["record"] for r in rules if "record" in r}
    for rule in rules:
        unknown = _metric_names(rule["expr"]) - exported - recorded
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: {unknown}"


@pytest.mark.parametrize("service", sorted(INTERFACES))
def test_each_service_has_a_dashboard_of_golden_signals_lag_and_throughput(
    service: str, tmp_path: Path
) -> None:
    manifests = render("prod")
    config = named(manifests, "ConfigMap", f"grafana-dashboard-{service}")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    [text] = config["data"].values()
    dashboard = json.loads(text)
    assert dashboard["uid"] == f"funnel-{service}"
    titles = [p["title"] for p in dashboard["panels"]]
    needed = ["Traffic", "Errors", "Latency", "Saturation", "Funnel throughput"]
    if INTERFACES[service].consumes:
        needed.append("Consumer lag")
    for word in needed:
        assert any(t.startswith(word) for t in titles), f"{service}: no {word} panel"
    exported = _exported_metrics()
    recorded = {
        r["record"] for r in _rule(manifests)["spec"]["groups"][0]["rules"] if "record" in r
    }
    literals = _code_string_literals()
    exprs = {}
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            exprs[f"p{panel['id']}{target['refId']}"] = expr
            assert f'service="{service}"' in expr or f'consumergroup="{service}"' in expr, expr
            assert not _metric_names(expr) - exported - recorded, expr
            for label, value in re.findall(r'(\w+)="([^"]*)"', expr):
                if label not in ("service", "consumergroup"):
                    assert value in literals, f"{label}={value!r}: no such value in the code"
    _promtool_check(tmp_path, exprs)


def _code_string_literals() -> set[str]:
    import ast

    found: set[str] = set()
    for path in [*REPO.glob("libs/servicekit/src/**/*.py"), *REPO.glob("services/*/src/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found
