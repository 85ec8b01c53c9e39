"""Figures the seed paper published for its own datasets, shown beside a board of the same dataset and protocol
lineage in a separate block, never ranked and never mixed into the measured rows."""

from __future__ import annotations

import re
from dataclasses import dataclass

from scldbench.report.leaderboard import Board
from scldbench.report.tables import Cell, TableData

#: the protocol lineage the paper's figures come from (scGAN / ACTIVA: RF AUC and multi-kernel MMD)
PAPER_PROTOCOL = "scgan-v1"
SOURCE = "SCLD paper, Table 3"
SOURCE_PER_CLUSTER = "SCLD paper, Table 5"
CAVEAT = ("published; other code, other protocol details: not ranked, and not comparable digit for digit with the "
          "table above")


@dataclass(frozen=True)
class PublishedRow:
    generator: str
    rf_auc: float | None
    mmd: float | None


#: dataset name -> the paper's rows (RF AUC / MMD; None where the paper gives no figure)
PUBLISHED: dict[str, tuple[PublishedRow, ...]] = {
    "pbmc68k": (
        PublishedRow("SCLD", 0.59, 0.65),
        PublishedRow("ACTIVA", 0.68, 0.80),
        PublishedRow("scGAN", 0.73, 0.90),
        PublishedRow("Splatter", 1.00, None),
        PublishedRow("positive (real cells)", 0.51, 0.05),
        PublishedRow("random", 1.00, None),
    ),
    "brain-small": (
        PublishedRow("SCLD", 0.61, 0.72),
        PublishedRow("ACTIVA", 0.62, 0.77),
        PublishedRow("scGAN", 0.74, 0.97),
        PublishedRow("positive (real cells)", 0.50, 0.02),
        PublishedRow("random", 1.00, None),
    ),
}

#: dataset name -> cluster -> generator -> published per-cluster RF AUC
PUBLISHED_PER_CLUSTER: dict[str, dict[str, dict[str, float]]] = {
    "pbmc68k": {"1": {"SCLD": 0.71, "cscGAN": 0.82}, "2": {"SCLD": 0.68, "cscGAN": 0.72},
                "3": {"SCLD": 0.70, "cscGAN": 0.86}, "6": {"SCLD": 0.69, "cscGAN": 0.75}},
}


def _dataset(board: Board) -> str:
    """The dataset name without the short fingerprint a board adds when two files share a name."""
    return re.sub(r" \[[0-9a-f]+\]$", "", board.dataset)


def _number(value: float | None) -> Cell:
    return Cell("–" if value is None else f"{value:.2f}")


def published_tables(board: Board) -> list[TableData]:
    """The paper's figures for `board`'s dataset, when it is one the paper used and the board's protocol is the
    paper's lineage; an empty list otherwise."""
    name = _dataset(board)
    if board.protocol != PAPER_PROTOCOL or name not in PUBLISHED:
        return []
    overall = TableData(
        title=f"{name}: published figures ({SOURCE})",
        headers=["generator", "RF AUC", "MMD"],
        rows=[[Cell(row.generator), _number(row.rf_auc), _number(row.mmd)] for row in PUBLISHED[name]],
        notes=[CAVEAT],
    )
    tables = [overall]
    clusters = PUBLISHED_PER_CLUSTER.get(name)
    if clusters:
        generators = sorted({g for values in clusters.values() for g in values})
        tables.append(TableData(
            title=f"{name}: published per-cluster RF AUC ({SOURCE_PER_CLUSTER})",
            headers=["cluster", *generators],
            rows=[[Cell(cluster), *(_number(values.get(g)) for g in generators)]
                  for cluster, values in clusters.items()],
            notes=[CAVEAT + "; the paper's cluster numbers, not this run's labels"],
        ))
    return tables
