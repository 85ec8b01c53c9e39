from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep downloads and prepared splits of the test session out of the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SCLDBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    # jobs of the tests' tiny suites take a second; starting worker processes for them would take longer
    # (tests/test_executors.py runs the worker processes and Ray on purpose)
    mp.setenv("SCLDBENCH_EXECUTOR", "serial")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def pbmc_mini() -> ad.AnnData:
    from scldbench.data import load_dataset

    return load_dataset("pbmc68k-mini")[0]


@pytest.fixture(scope="session")
def pbmc_prepared(pbmc_mini: ad.AnnData):
    from scldbench.data import PrepareSettings, prepare

    return prepare(pbmc_mini, PrepareSettings(labels_key="louvain"))


def make_counts(n_cells: int = 60, n_genes: int = 40, n_groups: int = 3, seed: int = 0) -> ad.AnnData:
    """Small count data with group structure: each group over-expresses its own block of genes."""
    rng = np.random.default_rng(seed)
    groups = np.arange(n_cells) % n_groups
    base = rng.gamma(2.0, 2.0, size=n_genes)
    means = np.tile(base, (n_groups, 1))
    for g in range(n_groups):
        means[g, g * (n_genes // n_groups) : (g + 1) * (n_genes // n_groups)] *= 6
    x = rng.poisson(means[groups]).astype(np.float32)
    obs = pd.DataFrame({"group": pd.Categorical([f"g{g}" for g in groups])}, index=[f"c{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    return ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=var)


@pytest.fixture()
def counts() -> ad.AnnData:
    return make_counts()


@pytest.fixture(scope="module")
def one_thread():
    """One BLAS / torch thread for a module's fits (small networks train faster and reproducibly on one), then
    the previous limits back."""
    from scldbench.threads import threads_limited

    with threads_limited(1):
        yield
