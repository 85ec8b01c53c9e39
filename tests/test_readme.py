"""The README shows what the repository holds: its result table is the checked-in reports', its code the example's."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def table(text: str, first_header: str, column: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table whose header starts with `first_header` (and names `column`,
    when given), best-value marks removed."""
    lines = text.splitlines()
    start = next(
        i for i, line in enumerate(lines)
        if line.startswith(f"| {first_header} |") and (column is None or f"| {column} |" in line)
    )
    body = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        body.append(line)

    def cells(line: str) -> list[str]:
        return [re.sub(r"\*\*|★", "", cell).strip() for cell in line.strip().strip("|").split("|")]

    return cells(lines[start]), [cells(line) for line in body]


def report_figures(name: str) -> dict[str, tuple[str, str]]:
    """Generator -> (RF AUC, MMD) of a leaderboard's first scgan-v1 board (after the win-rate summaries), without
    the best-value marks."""
    header, rows = table((ROOT / "reports" / f"{name}.md").read_text(), "generator", "RF AUC")
    auc, mmd = header.index("RF AUC"), header.index("MMD")
    return {row[0]: (row[auc], row[mmd]) for row in rows}


def test_readme_results_are_the_checked_in_reports():
    pbmc3k, bladder = report_figures("pbmc3k"), report_figures("bladder")
    _, rows = table(README, "generator")
    assert len(rows) >= 4
    for generator, pbmc_auc, pbmc_mmd, bladder_auc, bladder_mmd in rows:
        assert pbmc3k[generator] == (pbmc_auc, pbmc_mmd), generator
        assert bladder[generator] == (bladder_auc, bladder_mmd), generator


def test_readme_quotes_the_example_plugin_verbatim():
    example = ROOT / "examples" / "my-generator"
    sources = (example / "pyproject.toml").read_text() + (example / "my_generator" / "cluster_poisson.py").read_text()
    section = README.split("## Adding a generator", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:toml|python)\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 2
    for block in blocks:
        assert block in sources


def test_readme_links_point_at_files_in_the_repository():
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    relative = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert relative
    missing = [t for t in relative if not (ROOT / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
