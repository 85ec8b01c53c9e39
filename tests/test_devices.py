"""Networks on either device: a model fitted on one device samples the same distribution on another, and SCLD runs
under the bf16 autocast it uses on a GPU. The CPU cases run everywhere; the CUDA ones on a GPU
(tests/benchmarks/gpu_check.sh)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scldbench.generator import Generator
from scldbench.registry import get_generator
from tests.conftest import make_counts
from tests.test_generator_contract import TINY

NETWORKS = sorted(name for name in TINY if not get_generator(name).cpu_only)


def _gpu(*values):
    marks = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
    return pytest.param(*values, marks=marks, id="-".join(values))


def dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def largest_mean_gap(a: np.ndarray, b: np.ndarray) -> float:
    """The largest per-gene |mean difference| in standard errors (Welch's z); about 2-4 for two samples of one
    distribution over 30 genes, tens for different ones."""
    se = np.sqrt(a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b))
    gap = np.abs(a.mean(axis=0) - b.mean(axis=0))
    return float(np.divide(gap, se, out=np.zeros_like(gap), where=se > 0).max())


def assert_counts(x: np.ndarray, shape: tuple[int, int]) -> None:
    assert x.shape == shape and np.isfinite(x).all() and (x >= 0).all() and np.array_equal(x, np.round(x))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("fit_on", "load_on"), [("cpu", "cpu"), _gpu("cuda", "cuda"), _gpu("cuda", "cpu"),
                                                  _gpu("cpu", "cuda")])
@pytest.mark.parametrize("name", NETWORKS)
def test_a_model_fitted_on_one_device_samples_the_same_cells_distribution_on_another(name, fit_on, load_on,
                                                                                    tmp_path):
    cls = get_generator(name)
    if cls.missing_requirements():
        pytest.skip(f"{name} needs {', '.join(cls.missing_requirements())}")
    data = make_counts(n_cells=120, n_genes=30)
    fitted = cls.create(seed=5, device=fit_on, **TINY[name]).fit(data, "group")
    fitted.save(tmp_path / name)
    loaded = Generator.load(tmp_path / name, device=load_on)
    assert fitted.device.type == fit_on and loaded.device.type == load_on
    here, there = dense(fitted.sample(400, seed=2).X), dense(loaded.sample(400, seed=3).X)
    assert_counts(here, (400, 30))
    assert_counts(there, (400, 30))
    assert largest_mean_gap(here, there) < 5.0
    if cls.conditional:
        assert_counts(dense(loaded.sample(20, labels="g1", seed=4).X), (20, 30))


def test_scld_fits_and_samples_under_the_bf16_autocast_it_uses_on_a_gpu(monkeypatch):
    """The CPU's bf16 autocast stands in for CUDA's: half-precision outputs must not reach NumPy or mix dtypes."""
    from scldbench.scld import generator, stages, training

    used = []

    def cpu_bf16(device: torch.device, enabled: bool):
        used.append(enabled)
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()

    for module in (generator, stages, training):
        monkeypatch.setattr(module, "autocast", cpu_bf16)
    data = make_counts(n_cells=120, n_genes=30)
    model = get_generator("scld").create(seed=5, device="cpu", **TINY["scld"]).fit(data, "group")
    assert_counts(dense(model.sample(50, seed=1).X), (50, 30))
    assert_counts(dense(model.sample(10, labels="g2", seed=1).X), (10, 30))
    assert_counts(model.reconstruct(data), (120, 30))
    assert used and all(used)
