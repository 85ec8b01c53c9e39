"""Thread limits hold through the libraries a job calls: scanpy's numba kernels must not raise torch's threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from scldbench.threads import THREAD_ENV_VARS, available_cores

# scanpy's seurat_v3 gene selection (hvg-pca30-v1 runs it in every scored job) calls a numba parallel kernel;
# numba's OpenMP layer shares torch's OpenMP runtime
PROBE = """
import json, sys
import numpy as np, scipy.sparse as sp, anndata as ad, scanpy as sc
from scldbench.threads import limit_threads, threads_limited
limit_threads(1)
import torch, numba
rng = np.random.default_rng(0)
cells = ad.AnnData(sp.csr_matrix(rng.poisson(1.0, (300, 200)).astype(np.float32)))
with threads_limited(1):
    sc.pp.highly_variable_genes(cells, n_top_genes=50, flavor="seurat_v3")
    inside = torch.get_num_threads()
print(json.dumps({"torch": torch.get_num_threads(), "numba": numba.get_num_threads(), "inside": inside}))
"""


@pytest.mark.skipif(available_cores() < 2, reason="numba's default is one thread on one core: nothing to raise")
def test_scanpy_numba_kernels_leave_the_thread_limit_in_place():
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV_VARS}  # numba starts at the machine's cores
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    threads = json.loads(out.stdout.strip().splitlines()[-1])
    assert threads == {"torch": 1, "numba": 1, "inside": 1}
