"""Records name the code that made them, down to the commit when scldbench runs from a checkout."""

import shutil
import subprocess

import pytest

from scldbench.provenance import source_revision, versions

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(root, *args):
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_source_revision_names_the_commit_and_flags_changed_files(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("a = 1\n")
    _git(tmp_path, "add", "model.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "HEAD")

    assert source_revision(tmp_path) == head[:12]
    (tmp_path / "notes.txt").write_text("untracked files do not count\n")
    assert source_revision(tmp_path) == head[:12]
    (tmp_path / "model.py").write_text("a = 2\n")
    assert source_revision(tmp_path) == head[:12] + "+modified"


def test_source_revision_is_absent_outside_a_checkout(tmp_path):
    assert source_revision(tmp_path) is None


def test_versions_carry_the_packages_a_result_depends_on():
    found = versions()
    for name in ("python", "scldbench", "torch", "numpy", "scanpy"):
        assert found[name] != "not installed"
