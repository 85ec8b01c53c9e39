"""The paper's published figures appear beside a board of its own datasets, in their own block, never ranked."""

from __future__ import annotations

from pathlib import Path

from scldbench.report.html import leaderboard_html
from scldbench.report.leaderboard import leaderboard
from scldbench.report.markdown import leaderboard_markdown
from scldbench.results import load_records
from tests.record_factory import job, write_run


def _store(tmp_path: Path, dataset: str, protocol: str = "scgan-v1") -> Path:
    records = []
    for seed in (0, 1):
        kw = {"dataset": dataset, "protocol": protocol}
        records += [job("positive", seed, 0.5, 0.1, **kw), job("random", seed, 1.0, 1.5, **kw),
                    job("scgan", seed, 0.9 + 0.01 * seed, 0.6, **kw)]
    write_run(tmp_path / "store" / "run", records, dataset=dataset)
    return tmp_path / "store"


def test_pbmc68k_boards_carry_the_papers_figures_in_their_own_block(tmp_path):
    (board,) = leaderboard(load_records(_store(tmp_path, "pbmc68k")))
    text = leaderboard_markdown([board])
    measured, published = text.split("pbmc68k: published figures (SCLD paper, Table 3)")
    assert "published; other code, other protocol details" in published
    assert "| scGAN | 0.73 | 0.90 |" in published and "| SCLD | 0.59 | 0.65 |" in published
    assert "published per-cluster RF AUC (SCLD paper, Table 5)" in published and "| 3 | 0.70 | 0.86 |" in published
    # the ranked rows are the measured ones only: no published generator becomes a row of the board
    assert sorted(row.label for row in board.rows) == ["positive", "random", "scgan"]
    assert "0.73" not in measured
    assert "published figures" in leaderboard_html([board])


def test_other_datasets_and_protocols_show_no_published_block(tmp_path):
    (other,) = leaderboard(load_records(_store(tmp_path / "a", "pbmc3k")))
    (modern,) = leaderboard(load_records(_store(tmp_path / "b", "brain-small", protocol="hvg-pca30-v1")))
    assert "published" not in leaderboard_markdown([other]) and "published" not in leaderboard_markdown([modern])
    (brain,) = leaderboard(load_records(_store(tmp_path / "c", "brain-small")))
    assert "| ACTIVA | 0.62 | 0.77 |" in leaderboard_markdown([brain])
