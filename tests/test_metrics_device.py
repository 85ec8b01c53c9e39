"""Metrics on a GPU: the torch kernel sums agree with the CPU blocks, and scoring runs where the job runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from scldbench.errors import ScldbenchError
from scldbench.metrics import mmd_multi_kernel, mmd_rbf
from scldbench.metrics.device import metric_device, metrics_on
from scldbench.metrics.kernel_sums import mean_kernels_torch

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def direct_means(a: np.ndarray, b: np.ndarray, widths: np.ndarray) -> np.ndarray:
    d2 = cdist(a, b, "sqeuclidean")
    return np.array([np.exp(-d2 / w).mean() for w in widths])


@pytest.mark.parametrize("block_entries", [1, 997, 2**26])
def test_torch_kernel_sums_match_the_direct_computation_whatever_the_blocks(block_entries):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(61, 7)), rng.normal(0.4, 1.3, size=(47, 7))
    widths = np.array([2.0, 8.0, 5.3])
    cpu = torch.device("cpu")
    np.testing.assert_allclose(mean_kernels_torch(x, None, widths, cpu, block_entries=block_entries),
                               direct_means(x, x, widths), rtol=1e-12)
    np.testing.assert_allclose(mean_kernels_torch(x, y, widths, cpu, block_entries=block_entries),
                               direct_means(x, y, widths), rtol=1e-12)


def test_metrics_run_on_the_cpu_unless_a_job_says_otherwise():
    assert metric_device().type == "cpu"
    with metrics_on("cpu") as device:
        assert device.type == "cpu" and metric_device().type == "cpu"
    assert metric_device().type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_metrics_on_a_missing_gpu_is_a_clear_error():
    x = np.zeros((5, 2))
    with pytest.raises(ScldbenchError, match="no CUDA device is available"):
        mmd_multi_kernel(x, x, k=2, device="cuda")
    with pytest.raises(ScldbenchError, match="no CUDA device is available"), metrics_on("cuda"):
        pass


@pytest.mark.gpu
@needs_cuda
def test_mmd_on_the_gpu_matches_the_cpu():
    rng = np.random.default_rng(1)
    small_x, small_y = rng.normal(size=(300, 50)), rng.normal(0.1, 1.0, size=(280, 50))
    assert mmd_multi_kernel(small_x, small_y, device="cuda") == pytest.approx(
        mmd_multi_kernel(small_x, small_y, device="cpu"), rel=1e-9)
    assert mmd_rbf(small_x, small_y, device="cuda") == pytest.approx(mmd_rbf(small_x, small_y, device="cpu"),
                                                                     rel=1e-9)
    # past four million pairs the CPU blocks are float32, the GPU's float64
    x, y = rng.normal(size=(3000, 50)), rng.normal(0.05, 1.0, size=(3000, 50))
    with metrics_on("cuda"):
        on_gpu = mmd_multi_kernel(x, y)
    assert on_gpu == pytest.approx(mmd_multi_kernel(x, y, device="cpu"), rel=1e-5)
