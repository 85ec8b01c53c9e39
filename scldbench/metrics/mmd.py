"""Multi-kernel Gaussian maximum mean discrepancy with a bandwidth set by real cells' neighbour distances."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.neighbors import NearestNeighbors

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


def _scaled_distances(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """-|a_i - b_j|^2 * scale as one matrix product: [a, |a|^2, 1] . [2b, -1, -|b|^2]^T * scale, clipped at 0."""
    one_a, one_b = np.ones((len(a), 1), a.dtype), np.ones((len(b), 1), b.dtype)
    left = np.hstack([a, (a * a).sum(axis=1, keepdims=True), one_a])
    right = np.hstack([2 * b, -one_b, -(b * b).sum(axis=1, keepdims=True)]) * b.dtype.type(scale)
    out = left @ right.T
    return np.minimum(out, 0.0, out=out)


def _block_sums(a: np.ndarray, b: np.ndarray, widths: np.ndarray, split: int | None) -> np.ndarray:
    """Per width, the sum of exp(-|a_i - b_j|^2 / width) over the block; with `split`, the columns from `split`
    on count twice (the mirrored half of a symmetric sum)."""
    sums = np.zeros(len(widths))

    def total(values: np.ndarray) -> float:
        if split is None:
            return values.sum(dtype=np.float64)
        return values[:, :split].sum(dtype=np.float64) + 2.0 * values[:, split:].sum(dtype=np.float64)

    powers = _squarings(widths)
    kernel = np.exp(_scaled_distances(a, b, 1.0 / widths.max()))
    done = 0
    for i in sorted((i for i, p in enumerate(powers) if p is not None), key=lambda i: powers[i]):
        for _ in range(powers[i] - done):  # exp(-d/w)^(2^p), squaring in place from the widest kernel
            np.multiply(kernel, kernel, out=kernel)
        done = powers[i]
        sums[i] = total(kernel)
    for i in (i for i, p in enumerate(powers) if p is None):
        sums[i] = total(np.exp(_scaled_distances(a, b, 1.0 / widths[i])))
    return sums


def _mean_kernels(x: np.ndarray, y: np.ndarray | None, widths: np.ndarray, threads: int) -> np.ndarray:
    """Per width, the mean of exp(-|x_i - y_j|^2 / width) over all pairs (y None: x with itself, by symmetry)."""
    other = x if y is None else y
    step = max(16, _BLOCK_ENTRIES // len(other))
    starts = range(0, len(x), step)

    def block(start: int) -> np.ndarray:
        stop = min(start + step, len(x))
        if y is None:  # rows start:stop against columns start: (the diagonal block once, the rest twice)
            return _block_sums(x[start:stop], x[start:], widths, stop - start)
        return _block_sums(x[start:stop], other, widths, None)

    with ThreadPoolExecutor(max_workers=threads) as pool:  # numpy releases the GIL inside BLAS and ufuncs
        total = np.sum(list(pool.map(block, starts)), axis=0)
    return total / (len(x) * len(other))


def mmd_multi_kernel(
    real: np.ndarray, generated: np.ndarray, *, k: int = 25, scales: tuple[float, ...] = (0.5, 1.0, 2.0),
    threads: int | None = None,
) -> float:
    """sqrt of the biased MMD^2 with kernel sum_s exp(-|x-y|^2 / s^2), s in m * `scales`.

    m is the median distance of real cells to their `k` nearest neighbours. Kernel sums run over blocks of
    pairs (distances from products of data centred on the real cells' mean; float32 for large sets, sums in
    float64) on `threads` threads (default: this process's thread budget); memory stays at a few blocks.
    """
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    m = median_knn_distance(real, k)
    sigmas = np.array([m * s for s in scales] if m > 0 else [1.0])
    dtype = np.float64 if max(len(real), len(generated)) ** 2 <= _FLOAT64_PAIRS else np.float32
    widths = sigmas**2
    centre = real.mean(axis=0)
    x, y = (real - centre).astype(dtype), (generated - centre).astype(dtype)
    threads = threads or thread_budget()
    kxx = _mean_kernels(x, None, widths, threads).sum()
    kyy = _mean_kernels(y, None, widths, threads).sum()
    kxy = _mean_kernels(x, y, widths, threads).sum()
    return float(np.sqrt(max(kxx + kyy - 2 * kxy, 0.0)))


#: RBF kernel widths gamma of k(x, y) = exp(-gamma |x - y|^2): the set CellOT, scDiffusion and CFGen average over
RBF_GAMMAS: tuple[float, ...] = (2.0, 1.0, 0.5, 0.1, 0.01, 0.005)


def mmd_rbf(real: np.ndarray, generated: np.ndarray, *, gammas: tuple[float, ...] = RBF_GAMMAS) -> float:
    """Biased MMD^2 with the RBF kernel exp(-gamma |x-y|^2), averaged over `gammas` (0 for identical sets)."""
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"real {real.shape} and generated {generated.shape} must be 2-D with equal columns")
    widths = 1.0 / np.asarray(gammas, dtype=np.float64)
    centre = real.mean(axis=0)
    x, y = real - centre, generated - centre
    threads = thread_budget()
    values = _mean_kernels(x, None, widths, threads) + _mean_kernels(y, None, widths, threads) - 2 * _mean_kernels(
        x, y, widths, threads)
    return float(max(np.mean(values), 0.0))
