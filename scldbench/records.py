"""Reading a job record's per-protocol scores as flat views (one protocol's metrics at a time).

A record keeps every protocol's scores under record["scores"][protocol]; readers that show one protocol at a
time (a leaderboard board, a run table) take a view: the record with that protocol's "protocol",
"protocol_description", "metrics" and "per_cluster" filled in.
"""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]


def protocol_view(record: Record, protocol: str) -> Record:
    """`record` seen under `protocol`: its metrics and per-cluster scores at the top level."""
    entry = (record.get("scores") or {}).get(protocol) or {}
    return record | {
        "protocol": protocol, "protocol_description": entry.get("description", ""),
        "metrics": dict(entry.get("metrics") or {}), "per_cluster": dict(entry.get("per_cluster") or {}),
    }


def protocol_views(record: Record) -> list[Record]:
    """One view per protocol the record was scored under (a record without scores gives itself)."""
    scores = record.get("scores")
    if not scores:
        return [record | {"metrics": record.get("metrics") or {}, "per_cluster": record.get("per_cluster") or {}}]
    return [protocol_view(record, name) for name in scores]


def primary_view(record: Record) -> Record:
    """The view under the record's first protocol (run tables that show one set of scores per job)."""
    return protocol_views(record)[0]
