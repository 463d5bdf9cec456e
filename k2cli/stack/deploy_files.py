"""The repository's deploy files that list every registered exchange, rendered from their templates in deploy/.

scripts/gen_deploy.py writes them; tests/unit/test_deploy_files.py fails while a committed file and its
rendering differ. They are committed (not rendered at `k2 stack up`) because docker compose mounts them as
they are and promtool's unit tests name them by path.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from k2cli.exchanges import registry
from k2cli.exchanges.descriptor import ExchangeDescriptor
from k2cli.stack.templates import render, render_file

# a dashboard target whose expr names this is repeated for every exchange (deploy/grafana/k2.json.tmpl)
PREFIX_MARK = "<metric_prefix>"
NAME_MARK = "<exchange>"


def exchange_values(d: ExchangeDescriptor) -> dict[str, object]:
    """The placeholders of a per-exchange template block, filled for one exchange."""
    first_symbol = d.stored_symbol(d.check_symbols(d.default_symbols)[0])
    return {"name": d.name, "title": d.title, "metric_prefix": d.metric_prefix,
            "instance": f"127.0.0.1:{d.default_metrics_port}", "symbol": first_symbol}


def _block(template: Path) -> str:
    """A per-exchange template without its leading comment lines (they describe the template, not the output)."""
    lines = template.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return "".join(lines[start:])


def _each_exchange(template: Path) -> str:
    """A per-exchange template block rendered for every registered exchange, in registration order."""
    block = _block(template)
    return "".join(render(block, exchange_values(d), str(template)) for d in registry.all())


def stream_rules(deploy: Path) -> str:
    """deploy/prometheus/rules/k2-stream.yml: the per-exchange alert groups, then the shared ones."""
    t = deploy / "prometheus" / "templates"
    return render_file(t / "k2-stream.yml.tmpl", {"exchange_groups": _each_exchange(t / "k2-stream-exchange.yml.tmpl")})


def stream_rule_tests(deploy: Path) -> str:
    """deploy/prometheus/tests/k2-stream-exchanges_test.yml: one promtool test per exchange."""
    t = deploy / "prometheus" / "templates"
    return render_file(t / "k2-stream-exchanges_test.yml.tmpl",
                       {"exchange_tests": _each_exchange(t / "k2-stream-exchange_test.yml.tmpl")})


def _compose_stream(d: ExchangeDescriptor, first: str) -> str:
    """The compose service of one exchange's stream; the first one builds the image the others use."""
    head = "    build: .\n" if d.name == first else ""
    needs = ("      kafka-init: { condition: service_completed_successfully }\n"
             "      schema-registry: { condition: service_healthy }\n" if d.name == first
             else f"      stream-{first}: {{ condition: service_started }}\n")
    return (f"  stream-{d.name}:\n{head}"
            "    image: k2:latest\n"
            f'    command: ["stream", "{d.name}", "--metrics-port", "{d.default_metrics_port}"]\n'
            "    environment: *k2-env\n"
            f"    depends_on:\n{needs}"
            '    volumes: ["k2-data:/var/lib/k2"]\n'
            "    restart: unless-stopped\n"
            "    deploy:\n"
            "      resources:\n"
            '        limits: { cpus: "0.5", memory: 512M }\n\n')


def compose_file(root: Path) -> str:
    """docker-compose.yml: a Kafka topic and a stream service per exchange."""
    first = registry.default().name
    return render_file(root / "deploy" / "compose" / "docker-compose.yml.tmpl", {
        "topics": " ".join(d.default_topic for d in registry.all()),
        "stream_services": "".join(_compose_stream(d, first) for d in registry.all()),
        "first_stream": f"stream-{first}",
    })


def compose_prometheus(deploy: Path) -> str:
    """deploy/compose/prometheus.yml: a scrape target per exchange's stream service."""
    targets = "".join(f'      - targets: ["stream-{d.name}:{d.default_metrics_port}"]\n'
                      f"        labels: {{ exchange: {d.name} }}\n" for d in registry.all())
    return render_file(deploy / "compose" / "prometheus.yml.tmpl", {"stream_targets": targets})


def _target_for(target: dict[str, Any], d: ExchangeDescriptor) -> dict[str, Any]:
    out = copy.deepcopy(target)
    out["expr"] = out["expr"].replace(PREFIX_MARK, d.metric_prefix).replace(NAME_MARK, d.name)
    out["legendFormat"] = out.get("legendFormat", "").replace(NAME_MARK, d.name)
    return out


def dashboard(deploy: Path) -> str:
    """deploy/grafana/dashboards/k2.json: each per-exchange target repeated for every exchange."""
    board = json.loads((deploy / "grafana" / "k2.json.tmpl").read_text())
    for panel in board["panels"]:
        targets: list[dict[str, Any]] = panel.get("targets", [])
        if not any(PREFIX_MARK in t["expr"] for t in targets):
            continue
        expanded = [new for t in targets
                    for new in ([_target_for(t, d) for d in registry.all()] if PREFIX_MARK in t["expr"] else [t])]
        for index, target in enumerate(expanded):
            target["refId"] = chr(ord("A") + index)
        panel["targets"] = expanded
    return json.dumps(board, indent=2) + "\n"


def render_all(root: Path) -> dict[str, str]:
    """Every generated deploy file (path relative to the repository root) with its content."""
    deploy = root / "deploy"
    return {
        "deploy/prometheus/rules/k2-stream.yml": stream_rules(deploy),
        "deploy/prometheus/tests/k2-stream-exchanges_test.yml": stream_rule_tests(deploy),
        "docker-compose.yml": compose_file(root),
        "deploy/compose/prometheus.yml": compose_prometheus(deploy),
        "deploy/grafana/dashboards/k2.json": dashboard(deploy),
    }
