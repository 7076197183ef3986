"""The monitoring kit (contrib/): the alert rules pass their promtool tests, and every metric
the rules and the Grafana dashboard query is one ecrd exports (or node_exporter's own)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ecrd.metrics import Metrics, Snapshot

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "contrib" / "prometheus" / "ecrd-rules.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "ecrd-rules.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "ecrd.json"
# node_exporter's textfile collector: the metrics file's modification time.
NODE_EXPORTER = {"node_textfile_mtime_seconds"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def exported() -> set[str]:
    """Every sample name ecrd's metrics text has, rendered from a daemon with one of each."""
    metrics = Metrics("0.1.0")
    for state in ("pending", "succeeded"):
        event = {"topic": "transaction.state", "reference_id": "r1", "state": state}
        metrics.observe({**event, "terminal": "counter-1", "action": "Sale"})
    snapshot = Snapshot(
        tally=[("counter-1", "Sale", s, 1) for s in ("succeeded", "unknown", "disputed")],
        terminals=[{"id": "counter-1", "paired": True, "link": "up"}],
        clients=1,
        derivations=1,
        journal_bytes=4096,
        refusals={"notification": 1},
    )
    text = metrics.renderer(snapshot)().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions,
    keywords, label names or values, durations or dashboard variables."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings: label values, regexes
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\w+", "", expr)  # Grafana's variables
    names = set(re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr))
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def rule_exprs() -> list[str]:
    return re.findall(r"^\s+expr: (.+)$", RULES.read_text(), flags=re.MULTILINE)


def dashboard_queries(node: Any) -> Iterator[str]:
    """Every "expr" of the panels and every query of the template variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            query = key == "expr" or (key == "query" and "(" in str(value))
            if query and isinstance(value, str):
                yield value
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def test_the_expression_reader_finds_metric_names_only() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{instance=~"$instance", '
        'le="x"}[$__rate_interval]))) and on (instance) b == 0 unless c offset 5m'
    )
    assert metric_names(expr) == {"a_bucket", "b", "c"}
    assert metric_names("label_values(ecrd_build_info, instance)") == {
        "ecrd_build_info",
        "instance",
    }


def test_every_metric_the_rules_use_is_exported() -> None:
    known = exported() | NODE_EXPORTER
    exprs = rule_exprs()
    assert len(exprs) == len(re.findall(r"- alert: ", RULES.read_text())) >= 6
    used = set().union(*map(metric_names, exprs))
    assert used - known == set()
    assert {"ecrd_unresolved_transactions", "ecrd_disputed_transactions", "ecrd_up"} <= used


def test_every_alert_has_a_promtool_case() -> None:
    alerts = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert alerts == tested


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = list(dashboard_queries(dashboard))
    assert len(queries) >= 10
    known = exported() | NODE_EXPORTER
    for query in queries:
        names = metric_names(query) - {"instance"}  # label_values(metric, label)
        assert names and names <= known, query
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("needs promtool (Debian's prometheus package; .ci/run installs it)")
    return path


def test_the_alert_rules_pass_their_promtool_tests() -> None:
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.run(
        [tool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    tool = promtool()
    queries = list(dashboard_queries(json.loads(DASHBOARD.read_text())))
    # label_values(METRIC, LABEL) is Grafana's, not PromQL: its metric stands for itself.
    queries = [re.sub(r"^label_values\((\w+), \w+\)$", r"\1", q) for q in queries]
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, query in enumerate(queries):
        expr = query.replace("$__rate_interval", "5m").replace("$instance", ".*")
        lines += [f"      - record: dashboard:query{i}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "queries.yml").write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [tool, "check", "rules", str(tmp_path / "queries.yml")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
