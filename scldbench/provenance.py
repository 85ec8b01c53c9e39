"""What every record carries about the software and machine that made it."""

from __future__ import annotations

import platform
import subprocess
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("scldbench", "torch", "numpy", "scipy", "scanpy", "anndata", "scikit-learn", "pandas")


@cache
def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    revision = source_revision()
    if revision is not None:
        out["scldbench source"] = revision
    return out


def source_revision(root: Path | None = None) -> str | None:
    """The git commit scldbench runs from, with ``+modified`` when tracked files differ from it.

    The package version alone cannot tell apart two records made within one release from different code, since
    the job key holds the version. Returns None when the package does not run from a git checkout (an installed
    wheel) or git is not available.
    """
    root = root or Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = _git(root, "rev-parse", "--short=12", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+modified" if changed else "")


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.strip()
