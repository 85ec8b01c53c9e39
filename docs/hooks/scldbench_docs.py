"""mkdocs hook: pages take what the code and the checked-in reports declare, so nothing is written down twice.

A page asks for generated content with a marker on a line of its own:

- ``<!-- scldbench:cli -->``: the command-line reference, from the Typer app;
- ``<!-- scldbench:parameters NAME -->``: a generator's parameters and defaults, from its constructor signature;
- ``<!-- scldbench:settings NAME -->``: the generator's settings in the CPU suite and in the paper-scale suite;
- ``<!-- scldbench:figures NAME[,NAME...] -->``: the headline rows in each ranking report under ``reports/``, with
  the positive control's beside them;
- ``<!-- scldbench:generators -->``: every registered generator with its description and page.

The leaderboards in ``reports/`` become pages of the site as they are (``reports/<file>``), without a copy.
"""

from __future__ import annotations

import posixpath
import re
import sys
from pathlib import Path

import typer
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from typer.cli import get_docs_for_click

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "reports"
SUITES = ROOT / "suites"
# the suite sized for two CPU cores and the one with the papers' settings, as the generator pages show them
SETTINGS_SUITES = (("pbmc", "CPU suites"), ("pbmc-paper", "paper scale, for a GPU"))
# the reports that rank generators (several seeds on data large enough to tell them apart), in the order shown
RANKING_REPORTS = ("pbmc3k", "bladder")
FIGURE_COLUMNS = ("seeds", "RF AUC", "MMD", "cluster RF AUC", "precision", "recall", "fit s")
MARKER = re.compile(r"^<!-- scldbench:(\w+)(?: ([\w.,-]+))? -->$", re.MULTILINE)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for path in sorted(REPORTS.iterdir()):
        if path.suffix in (".md", ".html") and path.name != "README.md":
            files.append(File.generated(config, f"reports/{path.name}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    def replace(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        if kind == "cli":
            return cli_reference()
        if kind == "parameters" and name:
            return parameter_table(name)
        if kind == "figures" and name:
            return figure_table(name, page.file.src_uri)
        if kind == "settings" and name:
            return suite_settings(name)
        if kind == "generators":
            return generator_table(page.file.src_uri, files)
        raise PluginError(f"{page.file.src_uri}: unknown marker {match.group(0)!r}")

    return MARKER.sub(replace, markdown)


def cli_reference() -> str:
    from scldbench.cli import app

    command = typer.main.get_command(app)
    docs = get_docs_for_click(obj=command, ctx=typer.Context(command), name="scldbench")
    # Typer titles the page with the program's name; the page has its own title
    return re.sub(r"^# `scldbench`\n", "", docs.strip(), count=1)


def parameter_table(name: str) -> str:
    from scldbench.registry import get_generator

    cls = get_generator(name)
    lines = ["| parameter | default |", "| :--- | :--- |"]
    lines += [f"| `{key}` | `{value!r}` |" for key, value in cls.parameters().items()]
    can = [
        ("conditional", "samples cells of a requested label"),
        ("supports_guidance", "takes a guidance weight"),
        ("needs_gpu", "impractically slow without a GPU"),
        ("cpu_only", "runs on the CPU whatever `--device` says"),
    ]
    flags = [f"`{attr}` ({what})" for attr, what in can if getattr(cls, attr)]
    lines += ["", f"Registered as `{name}`: `{cls.__module__}.{cls.__qualname__}`."]
    lines.append(f"Capabilities: {', '.join(flags) if flags else 'unconditional, no guidance'}.")
    if cls.requires:
        lines.append(f"Needs {', '.join(cls.requires)}: `{cls.install_hint()}`.")
    return "\n".join(lines)


def headline_rows(report: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The header and rows (by generator name, controls without their tag) of a leaderboard's first board with an
    RF AUC column (the win-rate summaries come before it)."""
    lines = report.read_text().splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.startswith("| generator |") and "| RF AUC |" in line), None
    )
    if start is None:
        raise PluginError(f"{report} has no leaderboard table")
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].removesuffix(" (control)")] = cells
    return header, rows


def figure_table(names: str, page_uri: str) -> str:
    out = [
        "| report | generator | " + " | ".join(FIGURE_COLUMNS) + " |",
        "| :--- | :--- |" + " ---: |" * len(FIGURE_COLUMNS),
    ]
    for report_name in RANKING_REPORTS:
        header, rows = headline_rows(REPORTS / f"{report_name}.md")
        shown = [name for name in names.split(",") if name in rows]
        if not shown:
            continue
        link = posixpath.relpath(f"reports/{report_name}.md", posixpath.dirname(page_uri) or ".")
        for who in dict.fromkeys([*shown, "positive"]):
            cells = rows[who]
            picked = [_cell(cells, header, column) for column in FIGURE_COLUMNS]
            out.append(f"| [{report_name}]({link}) | {who} | " + " | ".join(picked) + " |")
    if len(out) == 2:
        return f"*No checked-in ranking report ({', '.join(RANKING_REPORTS)}) has `{names}` yet.*"
    return "\n".join(out)


def _cell(cells: list[str], header: list[str], column: str) -> str:
    return cells[header.index(column)] if column in header else "–"


def suite_settings(name: str) -> str:
    lines = []
    for suite, what in SETTINGS_SUITES:
        data = tomllib.loads((SUITES / f"{suite}.toml").read_text())
        params = data.get("params", {}).get(name, {})
        shown = ", ".join(f"`{key} = {value!r}`" for key, value in params.items()) or "the defaults"
        lines.append(f"- `{suite}` suite ({what}): {shown}.")
        for entry in data.get("generators", []):
            if isinstance(entry, dict) and entry.get("name") == name:
                variant = ", ".join(f"`{key} = {value!r}`" for key, value in entry.get("params", {}).items())
                lines.append(f"    - and as `{entry.get('label', name)}`: {variant or 'the same settings'}.")
    return "\n".join(lines)


def generator_table(page_uri: str, files: Files) -> str:
    from scldbench.registry import list_generators

    lines = ["| name | what it is | page |", "| :--- | :--- | :--- |"]
    for info in list_generators():
        if info.cls is None:
            lines.append(f"| `{info.name}` | {info.hint} | |")
            continue
        module = info.cls.__module__.rsplit(".", 1)[-1]
        stem = info.name if module == "generator" else module
        target = f"generators/{stem}.md"
        link = ""
        if files.get_file_from_path(target) is not None:
            link = f"[{stem}]({posixpath.relpath(target, posixpath.dirname(page_uri) or '.')})"
        lines.append(f"| `{info.name}` | {info.cls.description} | {link} |")
    return "\n".join(lines)
