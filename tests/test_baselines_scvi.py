"""scvi-tools' SCVI / SCANVI as a generator: tiny fits on real PBMC cells; skipped without scvi-tools installed."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch

from scldbench import Generator, ScldbenchError
from scldbench.registry import get_generator

TINY = {"max_epochs": 2, "scanvi_epochs": 1, "n_hidden": 16, "n_latent": 4, "batch_size": 64}


def test_listed_with_its_install_hint_and_importable_without_scvi_tools() -> None:
    cls = get_generator("scvi")
    assert cls.requires == ("scvi",) and cls.install_hint() == "pip install 'scldbench[scvi]'"
    # the module must not import scvi-tools at import time, or the registry could not list it when absent
    source = ast.parse(Path(sys.modules[cls.__module__].__file__).read_text())
    top_level = [n for n in source.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name.split(".")[0] for n in top_level for a in n.names} | {
        (n.module or "").split(".")[0] for n in top_level if isinstance(n, ast.ImportFrom)}
    assert "scvi" not in names and "lightning" not in names


@pytest.fixture(scope="module")
def small(pbmc_prepared) -> ad.AnnData:
    """160 real training cells of four clusters x the 200 most expressed genes."""
    train = pbmc_prepared.train
    labels = train.obs["cluster"].astype(str)
    top = labels.value_counts().index[:4]
    keep = np.flatnonzero(labels.isin(top).to_numpy())[:160]
    genes = np.sort(np.argsort(-np.asarray(train.X.sum(axis=0)).ravel())[:200])
    return train[keep][:, genes].copy()


@pytest.fixture(scope="module")
def scanvi(small, one_thread):
    pytest.importorskip("scvi")
    from scldbench.baselines.scvi import ScviTools

    return ScviTools(seed=0, **TINY).fit(small, labels_key="cluster")


def test_label_conditioned_samples_are_counts_with_the_requested_labels(scanvi, small) -> None:
    request = dict(zip(small.obs["cluster"].astype(str).value_counts().index[:2], (7, 5), strict=True))
    out = scanvi.sample(12, labels=request)
    x = np.asarray(out.X)
    assert out.shape == (12, small.n_vars) and list(out.var_names) == list(small.var_names)
    assert np.isfinite(x).all() and x.min() >= 0 and np.allclose(x, np.round(x)) and x.sum() > 0
    assert out.obs["cluster"].astype(str).value_counts()[list(request)].tolist() == [7, 5]
    unconditional = scanvi.sample(20)
    assert set(unconditional.obs["cluster"].astype(str)) <= set(small.obs["cluster"].astype(str))


def test_generation_never_encodes_cells(scanvi, monkeypatch) -> None:
    """The fitted generator holds no data and no encoder is called while sampling."""
    held = [v for v in vars(scanvi).values() if isinstance(v, ad.AnnData)]
    assert not held
    module = scanvi.module_

    def refuse(*args, **kwargs):
        raise AssertionError("an encoder ran during generation")

    for part in (module.z_encoder, module.encoder_z2_z1, module.classifier):
        monkeypatch.setattr(part, "forward", refuse)
    monkeypatch.setattr(module, "inference", refuse)
    assert scanvi.sample(8).shape[0] == 8


def test_seeded_and_saved_models_repeat_exactly(scanvi, small, tmp_path) -> None:
    from scldbench.baselines.scvi import ScviTools

    np.testing.assert_array_equal(scanvi.sample(10, seed=4).X, scanvi.sample(10, seed=4).X)
    scanvi.save(tmp_path / "m")
    loaded = Generator.load(tmp_path / "m")
    assert isinstance(loaded, ScviTools) and loaded.label_codes_ == scanvi.label_codes_
    np.testing.assert_array_equal(scanvi.sample(10, seed=4).X, loaded.sample(10, seed=4).X)
    # the network is stored as plain tensors, rebuilt on load: no scvi-tools object is pickled
    state = torch.load(tmp_path / "m" / "state.pt", weights_only=False)
    assert all(isinstance(v, torch.Tensor) for v in state["module_"].values())
    assert not any(type(v).__module__.startswith("scvi") for v in state.values())


def test_unlabelled_fit_is_scvi_and_refuses_labels(small) -> None:
    pytest.importorskip("scvi")
    from scldbench.baselines.scvi import ScviTools

    gen = ScviTools(seed=1, use_labels=False, **TINY).fit(small, labels_key="cluster")
    assert type(gen.module_).__name__ == "VAE"
    assert gen.sample(6).shape == (6, small.n_vars)
    with pytest.raises(ScldbenchError, match="not conditional"):
        gen.sample(3, labels=str(small.obs["cluster"].iloc[0]))


def test_data_of_one_label_fits_scvi_and_samples_that_label(small, one_thread) -> None:
    pytest.importorskip("scvi")
    one = small.copy()
    one.obs["cluster"] = "T cell"
    gen = get_generator("scvi").create(seed=0, **TINY).fit(one, labels_key="cluster")
    assert not gen.label_codes_  # SCVI alone: scANVI has no second class to tell apart
    out = gen.sample(10, labels={"T cell": 10})
    assert out.shape == (10, small.n_vars) and set(out.obs["cluster"].astype(str)) == {"T cell"}
    assert set(gen.sample(6).obs["cluster"].astype(str)) == {"T cell"}


def test_bad_parameters_are_refused() -> None:
    pytest.importorskip("scvi")
    from scldbench.baselines.scvi import ScviTools

    with pytest.raises(ScldbenchError, match="gene_likelihood must be one of zinb, nb"):
        ScviTools(gene_likelihood="poisson")
    with pytest.raises(ScldbenchError, match="max_epochs must be a positive whole number"):
        ScviTools(max_epochs=0)


def test_label_conditioned_draws_carry_their_labels(small, one_thread) -> None:
    """Cells drawn for a label differ from the rest as that label's real cells do (SCANVI's prior is trained)."""
    pytest.importorskip("scvi")
    from scldbench.baselines.scvi import ScviTools
    from scldbench.counts.numpy import log_normalise

    model = ScviTools(seed=0, max_epochs=150, n_hidden=32, n_latent=4, batch_size=64).fit(small, labels_key="cluster")
    labels = small.obs["cluster"].astype(str).to_numpy()
    drawn = model.sample(len(labels), labels=labels, seed=1)
    real, fake = log_normalise(small.X), log_normalise(drawn.X)
    for label in np.unique(labels):
        mine = labels == label
        real_shift = real[mine].mean(0) - real[~mine].mean(0)
        fake_shift = fake[mine].mean(0) - fake[~mine].mean(0)
        assert np.corrcoef(real_shift, fake_shift)[0, 1] > 0.7, label
