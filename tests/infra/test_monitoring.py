"""deploy/: the Prometheus alerts and the Grafana dashboard. promtool checks the rules and runs
their unit tests; every series an alert or a panel names is one GET /metrics exposes."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import token_client

DEPLOY = Path(settings.BASE_DIR) / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "beecatalog-memory.json"


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed here (Debian: apt-get install prometheus); .ci/run installs it")
    return found


def run_promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- what an expression names ---------------------------------------------------------------------

# PromQL's words that are neither functions (always followed by "(") nor series.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
            "and", "or", "unless", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series names in a PromQL expression (Grafana's ``$variables`` allowed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings: label values
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana's variables ($__rate_interval, $instance)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    names = set()
    for token in re.finditer(r"\d[\w.]*|[A-Za-z_:][\w:]*", expr):
        word = token.group(0)
        if word[0].isdigit() or word.lower() in KEYWORDS:
            continue  # a number or a duration (0.95, 1e3, 1d), or a keyword
        if expr[token.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        names.add(word)
    return names


@pytest.mark.parametrize("expr, names", [
    ("beecatalog_memory_redis_up == 0", {"beecatalog_memory_redis_up"}),
    ('sum by (tier) (rate(a_total{tier="l3", instance=~"$instance"}[$__rate_interval]))', {"a_total"}),
    ("histogram_quantile(0.95, sum by (le, tier) (rate(x_bucket[5m])))", {"x_bucket"}),
    ("sum(rate(a_total[1h] offset 1d)) > 3 * b and on(instance) c > 1e3", {"a_total", "b", "c"}),
    ("absent(up{job=\"sum(x)\"})", {"up"}),
    ("2 * max without (pod) (d_seconds)", {"d_seconds"}),
])
def test_metric_names_finds_the_series_of_an_expression(expr, names):
    assert metric_names(expr) == names


# --- the files' expressions -----------------------------------------------------------------------


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found.append((f"painel {panel['title']!r} ({target['refId']})", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            # label_values(series, label): the series is a selector
            selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            found.append((f"variável {variable['name']}", selector.group(1) if selector else query))
    return found


def all_queries() -> list[tuple[str, str]]:
    return [(f"alerta {rule['alert']}", rule["expr"]) for rule in alert_rules()] + dashboard_queries()


def test_the_alerts_cover_what_the_issue_asks():
    names = {rule["alert"]: rule for rule in alert_rules()}
    wanted = {"MemoriaRedisFora", "MemoriaTaxaDeAcertoBaixa", "MemoriaFalhasDeGeracao",
              "MemoriaPicoDeGastoDeTokens", "MemoriaLimpezaAtrasada", "MemoriaRenovacaoAntecipadaNoLimite"}
    assert wanted <= set(names)
    for rule in names.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_dashboard_shows_every_concern():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "beecatalog-memory"
    queries = " ".join(expr for _, expr in dashboard_queries())
    for series in ("beecatalog_memory_tier_hits_total", "beecatalog_memory_tokens_saved_total",
                   "beecatalog_memory_tokens_spent_total", "beecatalog_memory_generations_total",
                   "beecatalog_memory_generation_failures_total", "beecatalog_memory_redis_up",
                   "beecatalog_memory_lookup_seconds_bucket", "beecatalog_memory_generation_seconds_bucket",
                   "beecatalog_memory_purge_backlog_entries", "beecatalog_memory_purge_lag_seconds",
                   "beecatalog_memory_misses_avoided_total", "beecatalog_memory_tokens_spent_ahead_total",
                   "beecatalog_memory_refresh_token_budget", "beecatalog_memory_recorded_generations_total",
                   "beecatalog_memory_recorded_tokens_spent_total"):
        assert series in queries
    # every panel reads the dashboard's data source variable, so that it imports anywhere
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def exposed_series(client) -> set[str]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {sample.name for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def unknown_series(exposed: set[str]) -> list[str]:
    """Each query that names a series missing from ``exposed``, with the names."""
    unknown = []
    for where, expr in all_queries():
        names = metric_names(expr)
        assert names, f"{where}: no series found in {expr!r}"
        if names - exposed:
            unknown.append(f"{where}: {sorted(names - exposed)}")
    return unknown


@pytest.mark.django_db
def test_every_series_an_alert_or_a_panel_names_is_one_metrics_exposes(make_user, redis_client):
    # Every series exists from the start (each label's series too, at 0): no traffic needed.
    exposed = exposed_series(token_client(make_user("staff", staff=True)))
    assert unknown_series(exposed) == []


def test_an_unknown_series_is_reported():
    """The check above can fail: a name /metrics lacks is listed with where it is used."""
    exposed = {name for _, expr in all_queries() for name in metric_names(expr)}
    missing = "beecatalog_memory_generation_failures_total"
    assert any(missing in line for line in unknown_series(exposed - {missing}))


# --- promtool ---------------------------------------------------------------------------------------


def test_the_alert_rules_pass_promtool_check_rules(promtool):
    done = run_promtool(promtool, "check", "rules", str(ALERTS), cwd=ALERTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_the_alerts_fire_on_synthetic_series_as_their_unit_tests_say(promtool):
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    firing = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert {"MemoriaRedisFora", "MemoriaTaxaDeAcertoBaixa"} <= firing
    assert {rule["alert"] for rule in alert_rules()} <= firing  # each alert is shown firing at least once
    done = run_promtool(promtool, "test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_alert_unit_tests_fail_when_an_alert_would_not_fire(promtool, tmp_path):
    """promtool's unit tests can fail: with Redis-down's threshold changed, the test file catches it."""
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    (tmp_path / ALERTS.name).write_text(
        ALERTS.read_text().replace("expr: beecatalog_memory_redis_up == 0", "expr: beecatalog_memory_redis_up < 0"))
    done = run_promtool(promtool, "test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert done.returncode != 0 and "MemoriaRedisFora" in done.stdout + done.stderr


def test_every_dashboard_query_is_valid_promql(promtool, tmp_path):
    """Each panel's query, its Grafana variables given values, parsed by promtool as a recording rule."""
    values = {"$__rate_interval": "5m", "$__range": "6h", "$__interval": "1m", "$instance": ".*"}
    rules = []
    for i, (where, expr) in enumerate(dashboard_queries()):
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: a Grafana variable this test does not know: {expr!r}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run_promtool(promtool, "check", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readmes_prometheus_config_passes_promtool_check_config(promtool, tmp_path):
    """The README's scrape job and rule file, with the paths it names made real."""
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    block = readme.split("\n### Prometheus\n", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = yaml.safe_load(block)
    folder = tmp_path / "beecatalog-memory"
    folder.mkdir()
    shutil.copy(ALERTS, folder / "alerts.yml")
    (folder / "token").write_text("KEY")
    assert config["rule_files"] == ["/etc/prometheus/beecatalog-memory/alerts.yml"]
    web, worker = config["scrape_configs"]
    assert (web["metrics_path"], web["authorization"]["type"]) == ("/metrics", "Token")
    assert (worker["job_name"], worker["metrics_path"]) == ("beecatalog-memory-worker", "/metrics")
    assert worker["static_configs"][0]["targets"][0].endswith(":9540")
    path = tmp_path / "prometheus.yml"
    path.write_text(block.replace("/etc/prometheus/", f"{tmp_path}/"))
    done = run_promtool(promtool, "check", "config", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
