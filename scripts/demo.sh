#!/usr/bin/env bash
# The main job on the default, embedded settings: install, bring the local stack up, stream simulated
# Binance trades through Kafka into Iceberg, query them, and end with the end-to-end validation report.
# Usage: bash scripts/demo.sh [number of trades, default 5000]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:-5000}"
cd "$REPO"
K2_INSTALL_COMPOSE_PLUGIN=0 bash scripts/install.sh  # the compose plugin is for the docker-compose.yml check only
export PATH="$REPO/.venv/bin:$PATH"
k2 stack up

work="$(mktemp -d)"
k2 simulate binance --symbols BTCUSDT,ETHUSDT --rate 2000 --url-file "$work/url" --format json \
    > "$work/simulator.log" 2>&1 &
sim=$!
trap 'kill "$sim" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.1; done
[ -s "$work/url" ] || { echo "demo: the simulator did not start (see $work/simulator.log)" >&2; exit 1; }

echo "== k2 stream binance: $N simulated trades into Kafka"
k2 stream binance --url "$(cat "$work/url")" --symbols BTCUSDT,ETHUSDT --max-messages "$N" --metrics-port 0
echo "== k2 consume: into Iceberg (market_data.trades_v2), exactly once"
k2 consume --topics market.crypto.trades.binance --max-messages "$N"
echo "== k2 query trades: the newest BTCUSDT trades"
k2 query trades --symbol BTCUSDT --limit 5 --order desc
echo "== k2 validate e2e: the operators' consumer procedure, steps 1-6"
k2 validate e2e
