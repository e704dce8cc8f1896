"""deploy/observability: the alert rules pass ``promtool check rules`` and their unit tests
(``promtool test rules alerts.test.yaml``); the Grafana dashboard's queries are valid PromQL (promtool
checks them as recording rules) over mirrord's contract metrics only, and every contract metric is shown.

The metric names are read from :class:`mirrord.observe.metrics.Metrics` itself, so a renamed metric
breaks these tests rather than the dashboard in production.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirrord.observe.metrics import Metrics
from tests.deploy.tools import DEPLOY, run_tool
from tests.testbed.tools import require_tool

OBS = DEPLOY / "observability"
ALERTS = OBS / "alerts.yaml"
ALERT_TESTS = Path(__file__).with_name("alerts.test.yaml")
DASHBOARD = OBS / "grafana-dashboard.json"
METRIC = re.compile(r"\b(mirrord_[a-z_]+)\b")
REQUIRED_ALERTS = {
    "MirrordSyncFailing",
    "MirrordLastSuccessStale",
    "MirrordRateLimitLow",
    "MirrordRetriesClimbing",
}
# Grafana's template variables, replaced by something PromQL accepts so promtool can parse the queries.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__range": "1h", "$job": ".*", "$instance": ".*", "$entry": ".*"}


def contract_samples() -> dict[str, str]:
    """Sample name -> metric family, for every metric mirrord exports (histograms as their three series)."""
    out: dict[str, str] = {}
    for family in Metrics().registry.collect():
        names = {
            "counter": [f"{family.name}_total"],
            "histogram": [f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"],
        }.get(family.type, [family.name])
        for name in names:
            out[name] = family.name
    return out


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return body


def _queries() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


@pytest.mark.integration
def test_promtool_checks_the_rules() -> None:
    ran = run_tool([require_tool("promtool"), "check", "rules", str(ALERTS)])
    assert ran.code == 0, ran.output
    assert f"SUCCESS: {len(_rules())} rules found" in ran.output


@pytest.mark.integration
def test_promtool_unit_tests_the_alerts() -> None:
    ran = run_tool([require_tool("promtool"), "test", "rules", str(ALERT_TESTS)], cwd=ALERT_TESTS.parent)
    assert ran.code == 0, ran.output
    assert "SUCCESS" in ran.output


def test_every_required_alert_exists_and_is_unit_tested() -> None:
    names = {r["alert"] for r in _rules()}
    assert names >= REQUIRED_ALERTS
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == names


def test_alerts_use_contract_metrics_and_say_what_broke() -> None:
    samples = contract_samples()
    for rule in _rules():
        for metric in METRIC.findall(rule["expr"]):
            assert metric in samples, f"{rule['alert']}: {metric} is not a metric mirrord exports"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_dashboard_panels_are_well_formed() -> None:
    dash = _dashboard()
    assert dash["uid"] == "mirrord"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"datasource", "job", "instance", "entry"}


def test_dashboard_shows_every_contract_metric_and_nothing_else() -> None:
    samples = contract_samples()
    used = {m for q in _queries() for m in METRIC.findall(q)}
    unknown = used - set(samples)
    assert not unknown, f"not metrics mirrord exports: {sorted(unknown)}"
    assert {samples[m] for m in used} == set(samples.values())


@pytest.mark.integration
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = []
    for i, query in enumerate(_queries()):
        for var, value in GRAFANA_VARS.items():
            query = query.replace(var, value)
        assert "$" not in query, query
        rules.append({"record": f"dashboard:query_{i}", "expr": query})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    ran = run_tool([require_tool("promtool"), "check", "rules", str(path)])
    assert ran.code == 0, ran.output
