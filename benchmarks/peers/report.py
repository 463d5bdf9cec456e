"""The side-by-side table: each reader's figures, k2's ratios against each peer and against the machine."""

from __future__ import annotations

from typing import Any

NAMES = {"k2": "k2 consume", "connect": "Kafka Connect Iceberg sink", "spark": "Spark Structured Streaming"}


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _eo(kill: dict[str, Any] | None, records: int) -> str:
    if not kill:
        return "not run"
    fid = kill.get("fidelity") or {}
    if kill["status"] != "ok" or not fid:
        return f"FAILED ({kill['status'][:60]})"
    if kill.get("killed_at_rows", 0) >= records:
        return "not tested (every row was committed before the kill)"
    ok = fid["rows"] == records and fid["distinct_ids"] == records
    return f"{'yes' if ok else 'NO'}: {fid['rows']:,} rows, {fid['distinct_ids']:,} ids (killed at " \
           f"{kill.get('killed_at_rows', 0):,})"


def _fidelity(clean: dict[str, Any]) -> str:
    fid = clean.get("fidelity")
    if not fid:
        return "-"
    bad = [name for name, ok in fid["checks"].items() if not ok]
    return "exact" if not bad else "WRONG: " + ", ".join(bad)


def ratios(peers: dict[str, Any], limits: dict[str, Any]) -> dict[str, float]:
    """k2's advantage: peer time / k2 time and k2 rate / peer rate (above 1: k2 ahead); k2 over the limits."""
    out: dict[str, float] = {}
    k2 = (peers.get("k2") or {}).get("clean") or {}
    for peer in ("connect", "spark"):
        other = (peers.get(peer) or {}).get("clean") or {}
        if k2.get("steady_rows_per_s") and other.get("steady_rows_per_s"):
            out[f"k2/{peer} steady rows/s"] = round(k2["steady_rows_per_s"] / other["steady_rows_per_s"], 2)
        if k2.get("to_last_commit_s") and other.get("to_last_commit_s"):
            out[f"k2/{peer} time to last commit ({peer} s / k2 s)"] = round(
                other["to_last_commit_s"] / k2["to_last_commit_s"], 2)
    rate = k2.get("steady_rows_per_s")
    if rate and limits.get("kafka_read_rows_per_s"):
        out["k2 steady rows/s as a fraction of the raw Kafka read rate"] = round(
            rate / limits["kafka_read_rows_per_s"], 3)
    if rate and (limits.get("parquet_write") or {}).get("rows_per_s"):
        out["k2 steady rows/s as a fraction of the Parquet write rate"] = round(
            rate / limits["parquet_write"]["rows_per_s"], 3)
    return out


def render(results: dict[str, Any]) -> str:
    """The plain-text report."""
    records = results["records"]
    peers, limits = results["peers"], results["limits"]
    head = (f"{'reader':<28} {'steady rows/s':>13} {'to last commit s':>16} {'1st commit s':>12} "
            f"{'peak RSS MB':>11}  {'fidelity':<22} exactly once after kill -9")
    lines = [f"{records:,} Confluent-Avro v2 trades over 6 partitions; {results['settings']}", "", head,
             "-" * len(head)] if peers else []
    for peer, runs in peers.items():
        clean = runs.get("clean") or {}
        status = "" if clean.get("status") == "ok" else f"  [{clean.get('status', 'not run')[:80]}]"
        lines.append(f"{NAMES.get(peer, peer):<28} {_num(clean.get('steady_rows_per_s')):>13} "
                     f"{_num(clean.get('to_last_commit_s'), 1):>16} {_num(clean.get('first_commit_s'), 1):>12} "
                     f"{_num(clean.get('peak_rss_mb')):>11}  {_fidelity(clean):<22} "
                     f"{_eo(runs.get('kill'), records)}{status}")
    k2 = (peers.get("k2") or {}).get("clean") or {}
    if k2.get("exit_after_last_commit_s") is not None:
        lines.append(f"k2 consume: process wall {_num(k2.get('wall_s'), 1)} s, exit "
                     f"{_num(k2['exit_after_last_commit_s'], 2)} s after its last commit")
    lines.append("")
    if limits.get("kafka_read_rows_per_s"):
        lines.append("raw Kafka read (confluent-kafka, no decode, k2's fetch sizes): "
                     f"{_num(limits['kafka_read_rows_per_s'])} msg/s")
    if limits.get("parquet_write"):
        pw = limits["parquet_write"]
        lines.append(f"Parquet write (pyarrow, zstd, {pw['rows']:,} rows): {_num(pw['rows_per_s'])} rows/s")
    for name, value in results.get("ratios", {}).items():
        lines.append(f"{name}: {value}")
    stream = results.get("stream")
    if stream:
        lines.append("")
        lines.append("stream peer (benchmarks/peers/stream_peer.py):")
        for key, value in stream.items():
            if isinstance(value, dict) and not any(isinstance(v, (dict, list)) for v in value.values()):
                lines.append(f"  {key}: " + ", ".join(f"{k} {v:,}" if isinstance(v, (int, float)) else f"{k} {v}"
                                                      for k, v in value.items()))
            elif not isinstance(value, (dict, list)):
                lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def table_rows(results: dict[str, Any]) -> list[list[Any]]:
    """[reader, figure, value, unit] rows, the shape of run_all's table."""
    rows: list[list[Any]] = []
    for peer, runs in results["peers"].items():
        clean = runs.get("clean") or {}
        for key, unit in (("steady_rows_per_s", "rows/s"), ("to_last_commit_s", "s"), ("first_commit_s", "s"),
                          ("peak_rss_mb", "MB"), ("wall_s", "s"), ("exit_after_last_commit_s", "s")):
            if clean.get(key) is not None:
                rows.append([peer, key, clean[key], unit])
    rows.extend(["k2", name, value, "ratio"] for name, value in results.get("ratios", {}).items())
    for name, value in (results.get("stream") or {}).items():
        figures = value.items() if isinstance(value, dict) else [("", value)]
        rows.extend(["stream", f"{name} {k}".strip(), v, ""] for k, v in figures
                    if isinstance(v, (int, float)) and not isinstance(v, bool))
    return rows
