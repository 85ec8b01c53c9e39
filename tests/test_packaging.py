"""The installed package holds every module folder of the repository: baselines/ and suites/ install inside
scldbench (scldbench.baselines, scldbench.suites), never as top-level packages of their own."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_declared_under_scldbench():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {"scldbench": ROOT / "scldbench"} | {name: ROOT / path for name, path in setuptools["package-dir"].items()}
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            if not any(part in ("__pycache__", ".venv") for part in init.parts):
                relative = init.parent.relative_to(folder).parts
                found.add(".".join((name, *relative)))
    assert found == set(setuptools["packages"])
    assert all(name.startswith("scldbench") for name in setuptools["packages"])


def test_built_in_suites_and_generators_come_from_the_scldbench_namespace():
    import scldbench.suites
    from scldbench.registry import list_generators

    assert (Path(scldbench.suites.__file__).parent / "pbmc.toml").is_file()
    sources = {info.source for info in list_generators() if info.name in ("nb", "scld", "random")}
    assert all(source.startswith("scldbench.") for source in sources), sources
