"""Suite files: the built-ins load, and mistakes name the file, the key and the problem."""

from __future__ import annotations

import pytest

from scldbench.errors import ScldbenchError
from scldbench.suite import builtin_suites, load_suite


def write(tmp_path, text: str):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return str(path)


def test_builtin_suites_load():
    names = builtin_suites()
    assert {"smoke", "pbmc"} <= set(names)
    for name in names:
        suite = load_suite(name)
        assert suite.name == name and suite.seeds
    pbmc = load_suite("pbmc")
    assert pbmc.include_all and pbmc.fallback_dataset == "pbmc68k-mini"


def test_generator_variants_and_params(tmp_path):
    suite = load_suite(write(tmp_path, '''
name = "x"
dataset = "pbmc68k-mini"
seeds = [3, 5]
generators = ["positive", { name = "nb", label = "nb-size", params = { library_size = "none" }, timeout = 60 }]
[params.nb]
method = "moments"
[evaluate]
n_trees = 10
'''))
    assert suite.seeds == (3, 5)
    assert [e.label for e in suite.generators] == ["positive", "nb-size"]
    assert suite.generators[1].params == {"library_size": "none"} and suite.generators[1].timeout == 60
    assert suite.params == {"nb": {"method": "moments"}} and suite.evaluate.n_trees == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\ndataset = "d"\nsedes = 2', r"mine.toml: key 'sedes': unknown key \(did you mean: seeds\?\)"),
        ('name = "x"', "key 'dataset': is required"),
        ('name = "x"\ndataset = "d"\nseeds = 0', "key 'seeds': must be at least 1"),
        ('name = "x"\ndataset = "d"\n[prepare]\ntest_frac = 0.1', r"'prepare.test_frac'.*did you mean: test_fraction"),
        ('name = "x"\ndataset = "d"\nprotocol = "scgan"', "key 'protocol': unknown protocol 'scgan'"),
        ('name = "x"\ndataset = "d"\ngenerators = ["a", "a"]', "label 'a' appears twice"),
        ('name = "x"\ndataset = = 3', "not valid TOML"),
    ],
)
def test_mistakes_name_file_key_and_problem(tmp_path, text, message):
    with pytest.raises(ScldbenchError, match=message):
        load_suite(write(tmp_path, text))


def test_unknown_suite_suggests_close_names():
    with pytest.raises(ScldbenchError, match="unknown suite 'pbcm'.*did you mean: pbmc"):
        load_suite("pbcm")


def test_star_runs_every_registered_generator_beside_variants(pbmc_prepared):
    from scldbench.registry import list_generators
    from scldbench.runner import plan_jobs

    suite = load_suite("pbmc")
    labels = [job.label for job in plan_jobs(suite, pbmc_prepared, None, (0,))]
    assert {i.name for i in list_generators() if i.available} | {"nb-libsize"} == set(labels)
    assert labels[-3:] == ["positive", "shuffle", "random"]


def test_star_leaves_out_generators_this_installation_cannot_run(pbmc_prepared, caplog):
    from scldbench import registry
    from scldbench.generator import Generator
    from scldbench.runner import plan_jobs

    class NeedsAbsentPackage(Generator):
        name = "needs-absent"
        requires = ("a_package_nobody_installed",)

        def _fit(self, adata, labels):
            raise AssertionError

        def _sample(self, n_cells, labels, guidance):
            raise AssertionError

    registry.register("needs-absent", NeedsAbsentPackage)
    try:
        labels = [job.label for job in plan_jobs(load_suite("pbmc"), pbmc_prepared, None, (0,))]
    finally:
        registry.unregister("needs-absent")
    assert "needs-absent" not in labels and "positive" in labels
    assert "'needs-absent' left out" in caplog.text and "a_package_nobody_installed" in caplog.text


def test_a_changed_generator_default_changes_the_job_key(pbmc_prepared, monkeypatch):
    from scldbench.baselines.nb import NegativeBinomial
    from scldbench.runner import plan_jobs

    suite = load_suite("pbmc")
    keys = {job.label: job.key for job in plan_jobs(suite, pbmc_prepared, ["nb", "splat"], (0,))}
    defaults = NegativeBinomial.parameters()
    monkeypatch.setattr(NegativeBinomial, "parameters", classmethod(lambda cls: defaults | {"estimator": "moments"}))
    again = {job.label: job.key for job in plan_jobs(suite, pbmc_prepared, ["nb", "splat"], (0,))}
    # a stored nb result made under the old default is not reused; splat's is
    assert again["nb"] != keys["nb"] and again["nb-libsize"] != keys["nb-libsize"]
    assert again["splat"] == keys["splat"]


def test_fallback_params_apply_on_the_fallback_dataset_only(pbmc_prepared):
    from scldbench.runner import plan_jobs

    suite = load_suite("pbmc")
    on_fallback = {job.label: job.params for job in plan_jobs(suite, pbmc_prepared, ["scgan", "nb"], (0,),
                                                               "pbmc68k-mini")}
    elsewhere = {job.label: job.params for job in plan_jobs(suite, pbmc_prepared, ["scgan", "nb"], (0,),
                                                             "/data/my_cells.h5ad")}
    assert on_fallback["scgan"]["steps"] == suite.fallback_params["scgan"]["steps"]
    assert elsewhere["scgan"]["steps"] == suite.params["scgan"]["steps"] != on_fallback["scgan"]["steps"]
    assert on_fallback["nb-libsize"] == elsewhere["nb-libsize"]  # generators without fallback budgets unchanged
    assert f"scgan steps={on_fallback['scgan']['steps']}" in suite.fallback_note("pbmc68k-mini")
    assert suite.fallback_note("/data/my_cells.h5ad") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\ndataset = "d"\n[fallback_params.nb]\nmethod = "moments"', "the suite names none"),
        ('name = "x"\ndataset = "d"\nfallback_dataset = "e"\n[fallback_params.nb]\nmethd = 1',
         "key 'fallback_params.nb.methd': generator 'nb' has no such parameter"),
        ('name = "x"\ndataset = "d"\nfallback_dataset = "e"\nfallback_params = 3', "must be a table of tables"),
    ],
)
def test_fallback_params_mistakes(tmp_path, text, message):
    with pytest.raises(ScldbenchError, match=message):
        load_suite(write(tmp_path, text))
