"""Multi-kernel Gaussian maximum mean discrepancy with a bandwidth set by real cells' neighbour distances."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from scldbench.metrics.device import metric_device
from scldbench.metrics.kernel_sums import mean_kernels_torch
from scldbench.threads import thread_budget

#: kernel entries per block: small enough to stay in reused heap memory, large enough for BLAS
_BLOCK_ENTRIES = 2**21
#: up to this many pairs the sums run in float64; beyond it in float32, whose rounding errors average out over
#: the many pairs, and float64 exp costs many times float32 exp (docs/decisions/scale.md has the timings)
_FLOAT64_PAIRS = 4_000_000
#: widths whose ratio to the widest is 2**p, p up to this, come from the widest kernel by repeated squaring
_MAX_SQUARINGS = 8


def median_knn_distance(x: np.ndarray, k: int = 25) -> float:
    """Median distance of each point to its `k` nearest neighbours (itself excluded), over all pairs."""
    x = np.asarray(x, dtype=np.float64)
    k = min(k, len(x) - 1)
    if k < 1:
        raise ValueError("median_knn_distance needs at least 2 points")
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return float(np.median(dist[:, 1:]))


def _squarings(widths: np.ndarray) -> list[int | None]:
    """For each width, p such that exp(-d/width) = exp(-d/widest) ** (2**p), or None when there is no such p."""
    out: list[int | None] = []
    for w in widths:
        p = np.log2(widths.max() / w)
        out.append(int(round(p)) if abs(p - round(p)) < 1e-9 and round(p) <= _MAX_SQUARINGS else None)
    return out


def _left_factor(a: np.ndarray) -> np.ndarray:
    """[a, |a|^2, 1]: with `_right_factor`, one matrix product gives -|a_i - b_j|^2 * scale."""
    return np.hstack([a, (a * a).sum(axis=1, keepdims=True), np.ones((len(a), 1), a.dtype)])


def _right_factor(b: np.ndarray, scale: float) -> np.ndarray:
    """[2b, -1, -|b|^2] * scale, transposed so that blocks of its columns are the points of `b`."""
    one_b = np.ones((len(b), 1), b.dtype)
    return (np.hstack([2 * b, -one_b, -(b * b).sum(axis=1, keepdims=True)]) * b.dtype.type(scale)).T


def _scaled_distances(left: np.ndarray, right: np.ndarray, out: np.ndarray) -> np.ndarray:
    """-|a_i - b_j|^2 * scale into `out` (from the factors of a and b), clipped at 0."""
    np.matmul(left, right, out=out)
    return np.minimum(out, 0.0, out=out)


def _block_sums(left: np.ndarray, rights: list[np.ndarray], widths: np.ndarray, split: int | None,
                buffer: np.ndarray) -> np.ndarray:
    """Per width, the sum of exp(-|a_i - b_j|^2 / width) over the block of `left` (a's factor) against
    `rights` (b's factors, the widest width's first); with `split`, the columns from `split` on count twice
    (the mirrored half of a symmetric sum). `buffer` holds the kernel values."""
    sums = np.zeros(len(widths))
    kernel = buffer[: left.shape[0] * rights[0].shape[1]].reshape(left.shape[0], rights[0].shape[1])

    def total(values: np.ndarray) -> float:
        if split is None:
            return values.sum(dtype=np.float64)
        return values[:, :split].sum(dtype=np.float64) + 2.0 * values[:, split:].sum(dtype=np.float64)

    powers = _squarings(widths)
    np.exp(_scaled_distances(left, rights[0], kernel), out=kernel)
    done = 0
    for i in sorted((i for i, p in enumerate(powers) if p is not None), key=lambda i: powers[i]):
        for _ in range(powers[i] - done):  # exp(-d/w)^(2^p), squaring in place from the widest kernel
            np.multiply(kernel, kernel, out=kernel)
        done = powers[i]
        sums[i] = total(kernel)
    for r, i in enumerate(i for i, p in enumerate(powers) if p is None):
        sums[i] = total(np.exp(_scaled_distances(left, rights[r + 1], kernel), out=kernel))
    return sums


def _mean_kernels(x: np.ndarray, y: np.ndarray | None, widths: np.ndarray, threads: int) -> np.ndarray:
    """Per width, the mean of exp(-|x_i - y_j|^2 / width) over all pairs (y None: x with itself, by symmetry)."""
    other = x if y is None else y
    step = max(16, _BLOCK_ENTRIES // len(other))
    starts = range(0, len(x), step)
    # the other set's factor once for every block: the widest width's, then each width not reached by squaring
    powers = _squarings(widths)
    scales = [1.0 / widths.max()] + [1.0 / w for w, p in zip(widths, powers, strict=True) if p is None]
    rights = [_right_factor(other, scale) for scale in scales]
    buffers = threading.local()

    def block(start: int) -> np.ndarray:
        stop = min(start + step, len(x))
        if not hasattr(buffers, "kernel"):
            buffers.kernel = np.empty(step * len(other), dtype=x.dtype)
        left = _left_factor(x[start:stop])
        if y is None:  # rows start:stop against columns start: (the diagonal block once, the rest twice)
            return _block_sums(left, [r[:, start:] for r in rights], widths, stop - start, buffers.kernel)
        return _block_sums(left, rights, widths, None, buffers.kernel)

    # numpy releases the GIL inside BLAS and ufuncs; each block's product on one BLAS thread, so that BLAS's own
    # threads do not contend with the pool's
    with ThreadPoolExecutor(max_workers=threads) as pool, threadpool_limits(limits=1 if threads > 1 else None):
        total = np.sum(list(pool.map(block, starts)), axis=0)
    return total / (len(x) * len(other))


def _pair_kernel_means(real: np.ndarray, generated: np.ndarray, widths: np.ndarray, device: torch.device,
                       threads: int | None, *, float32_blocks: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per width, the mean kernel over real x real, generated x generated and real x generated pairs, on data
    centred on the real cells' mean: on a GPU in float64 blocks, on the CPU as `_mean_kernels` (float32 blocks if
    `float32_blocks`)."""
    centre = real.mean(axis=0)
    if device.type == "cuda":
        x, y = real - centre, generated - centre
        return tuple(mean_kernels_torch(a, b, widths, device) for a, b in ((x, None), (y, None), (x, y)))
    dtype = np.float32 if float32_blocks else np.float64
    x, y = (real - centre).astype(dtype, copy=False), (generated - centre).astype(dtype, copy=False)
    threads = threads or thread_budget()
    return tuple(_mean_kernels(a, b, widths, threads) for a, b in ((x, None), (y, None), (x, y)))


def mmd_multi_kernel(
    real: np.ndarray, generated: np.ndarray, *, k: int = 25, scales: tuple[float, ...] = (0.5, 1.0, 2.0),
    threads: int | None = None, device: str | torch.device | None = None,
) -> float:
    """sqrt of the biased MMD^2 with kernel sum_s exp(-|x-y|^2 / s^2), s in m * `scales`.

    m is the median distance of real cells to their `k` nearest neighbours. Kernel sums run over blocks of
    pairs (distances from products of data centred on the real cells' mean); memory stays at a few blocks. On the
    CPU the blocks are float32 for large sets (sums in float64) on `threads` threads (default: this process's
    thread budget); on a GPU (`device`, default: `metrics.device.metric_device()`) they are float64.
    """
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    m = median_knn_distance(real, k)
    sigmas = np.array([m * s for s in scales] if m > 0 else [1.0])
    kxx, kyy, kxy = (means.sum() for means in _pair_kernel_means(
        real, generated, sigmas**2, metric_device(device), threads,
        float32_blocks=max(len(real), len(generated)) ** 2 > _FLOAT64_PAIRS))
    return float(np.sqrt(max(kxx + kyy - 2 * kxy, 0.0)))


#: RBF kernel widths gamma of k(x, y) = exp(-gamma |x - y|^2): the set CellOT, scDiffusion and CFGen average over
RBF_GAMMAS: tuple[float, ...] = (2.0, 1.0, 0.5, 0.1, 0.01, 0.005)


def mmd_rbf(real: np.ndarray, generated: np.ndarray, *, gammas: tuple[float, ...] = RBF_GAMMAS,
            device: str | torch.device | None = None) -> float:
    """Biased MMD^2 with the RBF kernel exp(-gamma |x-y|^2), averaged over `gammas` (0 for identical sets); on a
    GPU when `device` (default: `metrics.device.metric_device()`) is one."""
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"real {real.shape} and generated {generated.shape} must be 2-D with equal columns")
    widths = 1.0 / np.asarray(gammas, dtype=np.float64)
    kxx, kyy, kxy = _pair_kernel_means(real, generated, widths, metric_device(device), None, float32_blocks=False)
    return float(max(np.mean(kxx + kyy - 2 * kxy), 0.0))
