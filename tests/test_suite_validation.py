"""Every suite value is checked when the suite loads: type, range, generator parameters; file, key and problem named."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from scldbench.cli import app
from scldbench.errors import EXIT_BAD_INPUT, ScldbenchError
from scldbench.store import safe_name
from scldbench.suite import load_suite, parse_suite

runner = CliRunner()
HEAD = 'name = "x"\ndataset = "pbmc68k-mini"\ngenerators = ["random", "nb"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[prepare]\nmin_genes = "ten"', r"'prepare.min_genes': must be an integer, got 'ten'"),
        ("[prepare]\ntest_fraction = 1.5", r"'prepare.test_fraction': must be less than 1, got 1.5"),
        ("[prepare]\ntest_fraction = 0.5\nholdout_fraction = 0.5", r"'prepare': test_fraction \+ holdout_fraction"),
        ('[evaluate]\nn_trees = "many"', r"'evaluate.n_trees': must be an integer, got 'many'"),
        ("[evaluate]\nn_trees = 0", r"'evaluate.n_trees': must be at least 1, got 0"),
        ('[evaluate]\nper_cluster = "no"', r"'evaluate.per_cluster': must be true or false, got 'no'"),
        ("[evaluate]\nn_generated = -5", r"'evaluate.n_generated': must be at least 1, got -5"),
        ("[evaluate]\nguidance_sweep = []", "'evaluate.guidance_sweep': must be a non-empty list"),
        ('[params.nb]\nmethod = 3', r"'params.nb.method': must be a string, got 3"),
        ('[params.nb]\nmethd = "mle"', r"'params.nb.methd'.*no such parameter \(did you mean: method\?\)"),
        ('[params.nb]\nmethod = "best"', r"'params.nb'.*refuses these parameters"),
        ("[params.nb]\nseed = 3", r"'params.nb.seed': is set by the run"),
        ("[params.nosuch]\nx = 1", "'params.nosuch': unknown generator 'nosuch'"),
        ("timeout_seconds = -1", r"'timeout_seconds': must be more than 0"),
        ('timeout_seconds = "1h"', r"'timeout_seconds': must be a number, got '1h'"),
    ],
)
def test_bad_values_name_file_key_and_value(tmp_path, text, message):
    path = tmp_path / "mine.toml"
    path.write_text(HEAD + text)
    with pytest.raises(ScldbenchError, match=rf"mine.toml: key {message}"):
        load_suite(str(path))


def test_bad_entry_timeout_and_unknown_generator(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "x"\ndataset = "d"\ngenerators = [{ name = "random", timeout = 0 }]')
    with pytest.raises(ScldbenchError, match=r"generators.random.timeout': must be more than 0"):
        load_suite(str(path))
    path.write_text('name = "x"\ndataset = "d"\ngenerators = ["randon"]')
    with pytest.raises(ScldbenchError, match=r"unknown generator 'randon' \(did you mean: random"):
        load_suite(str(path))


def test_the_cli_refuses_a_bad_suite_with_exit_code_2_before_reading_data(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(HEAD + '[evaluate]\nn_trees = "many"')
    result = runner.invoke(app, ["run", str(path), "--data", str(tmp_path / "none.h5ad")])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "evaluate.n_trees" in result.output and "none.h5ad" not in result.output


TOML_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(-2, 2000, allow_nan=False),
                        st.text(max_size=5), st.lists(st.integers(-2, 5), max_size=3))
EVALUATE_KEYS = ["n_trees", "per_cluster", "min_cluster_cells", "guidance", "n_generated", "extra_metrics",
                 "sweep_cells", "augment_keep", "guidance_sweep"]
PREPARE_KEYS = ["min_genes", "min_cells", "n_clusters", "cluster_resolution", "test_fraction", "max_cells", "seed"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.sampled_from(["evaluate", "prepare"]), data=st.data())
def test_any_value_is_accepted_with_the_right_type_or_refused_with_one_line(section, data):
    key = data.draw(st.sampled_from(EVALUATE_KEYS if section == "evaluate" else PREPARE_KEYS))
    value = data.draw(TOML_VALUES)
    if value is None:
        return  # TOML has no null
    suite = {"name": "x", "dataset": "d", "generators": ["random"], section: {key: value}}
    try:
        parsed = parse_suite(suite, "fuzz.toml")
    except ScldbenchError as exc:
        assert str(exc).startswith(f"fuzz.toml: key '{section}.{key}'") or "fuzz.toml: key 'prepare'" in str(exc)
        assert "\n" not in str(exc)
        return
    if section == "evaluate":
        accepted = getattr(parsed.evaluate, key)
        if isinstance(accepted, bool) or key in ("per_cluster", "extra_metrics"):
            assert isinstance(accepted, bool) and accepted == value
        elif key == "guidance_sweep":
            assert all(isinstance(v, float) for v in accepted)
        else:
            assert not isinstance(value, bool | str | list) and value >= (0 if key == "guidance" else 1)
    else:
        assert not isinstance(value, bool | str | list) and value >= 0


@given(st.text(max_size=40))
def test_any_suite_name_becomes_one_folder_inside_runs(name):
    folder = safe_name(name)
    assert folder and "/" not in folder and "\\" not in folder and not folder.startswith(".")
    root = Path("/tmp/runs")
    assert (root / folder).resolve().parent == root.resolve()


def test_a_suite_named_to_escape_runs_inside_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "escape.toml"
    path.write_text('name = "../../escape"\ndataset = "pbmc68k-mini"\ngenerators = ["random"]\n'
                    "[evaluate]\nn_trees = 10\nextra_metrics = false\nper_cluster = false\nsave_samples = false\n")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    made = list((tmp_path / "runs").glob("*/run.json"))
    assert len(made) == 1 and made[0].parent.name == "_.._escape"
    assert not (tmp_path.parent.parent / "escape").exists()
