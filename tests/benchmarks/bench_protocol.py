"""Speed of the protocol's pieces at pbmc3k scale (540 test cells x 13,714 genes) and at PBMC 68k's test size.

Run: python -m pytest tests/benchmarks/bench_protocol.py --benchmark-enable --benchmark-columns=min,mean,max
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from scldbench.counts.numpy import normalise_total
from scldbench.metrics import mmd_multi_kernel, rf_auc
from scldbench.protocols import get_protocol


def counts(n_cells: int, n_genes: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    means = rng.gamma(0.3, 2.0, size=n_genes)
    size = rng.lognormal(0, 0.4, size=(n_cells, 1))
    return sp.csr_matrix(rng.poisson(means * size).astype(np.float32))


@pytest.fixture(scope="module")
def pbmc3k_sized():
    return counts(540, 13_714, 0), counts(540, 13_714, 1)


def test_normalise_total(benchmark, pbmc3k_sized):
    real, _ = pbmc3k_sized
    benchmark(normalise_total, real, 20_000, dtype=np.float32)


def test_rf_auc_1000_trees(benchmark, pbmc3k_sized):
    real, gen = (normalise_total(x, 20_000, dtype=np.float32) for x in pbmc3k_sized)
    benchmark.pedantic(rf_auc, args=(real, gen), rounds=1, iterations=1)


def test_mmd_pca50(benchmark):
    rng = np.random.default_rng(0)
    benchmark(mmd_multi_kernel, rng.normal(size=(2000, 50)), rng.normal(size=(2000, 50)))


def test_full_scgan_v1_evaluation(benchmark, pbmc3k_sized):
    real, gen = pbmc3k_sized
    benchmark.pedantic(get_protocol("scgan-v1").evaluate, args=(real, gen), rounds=1, iterations=1)
