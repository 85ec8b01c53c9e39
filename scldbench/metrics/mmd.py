"""Multi-kernel Gaussian maximum mean discrepancy with a bandwidth set by real cells' neighbour distances."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.neighbors import NearestNeighbors

from scldbench.threads import thread_budget

#: kernel entries per block: small enough to stay in reused heap memory, large enough for BLAS
_BLOCK_ENTRIES = 2**21
#: up to this many pairs the sums run in float64; beyond it in float32, whose rounding errors average out over
#: the many pairs (float64 exp costs ~15x float32 exp on common CPUs)
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


def _block_sums(a: np.ndarray, b: np.ndarray, na: np.ndarray, nb: np.ndarray, widths: np.ndarray,
                split: int | None) -> np.ndarray:
    """Per width, the sum of exp(-|a_i - b_j|^2 / width) over the block; with `split`, the columns from `split`
    on count twice (the mirrored half of a symmetric sum)."""
    d2 = a @ b.T
    d2 *= -2.0
    d2 += na[:, None]
    d2 += nb[None, :]
    np.maximum(d2, 0.0, out=d2)
    powers = _squarings(widths)
    sums = np.zeros(len(widths))
    widest = np.exp(d2 * d2.dtype.type(-1.0 / widths.max()))
    kernel = np.empty_like(widest)

    def add(i: int, values: np.ndarray) -> None:
        if split is None:
            sums[i] += values.sum(dtype=np.float64)
        else:
            sums[i] += values[:, :split].sum(dtype=np.float64) + 2.0 * values[:, split:].sum(dtype=np.float64)

    for i, (width, p) in enumerate(zip(widths, powers, strict=True)):
        if p is None:
            np.multiply(d2, d2.dtype.type(-1.0 / width), out=kernel)
            np.exp(kernel, out=kernel)
        else:
            np.copyto(kernel, widest)
            for _ in range(p):
                np.multiply(kernel, kernel, out=kernel)
        add(i, kernel)
    return sums


def _mean_kernels(x: np.ndarray, y: np.ndarray | None, widths: np.ndarray, threads: int) -> np.ndarray:
    """Per width, the mean of exp(-|x_i - y_j|^2 / width) over all pairs (y None: x with itself, by symmetry)."""
    other = x if y is None else y
    nx, ny = (x * x).sum(axis=1), (other * other).sum(axis=1)
    step = max(16, _BLOCK_ENTRIES // len(other))
    starts = range(0, len(x), step)

    def block(start: int) -> np.ndarray:
        stop = min(start + step, len(x))
        if y is None:  # rows start:stop against columns start: (the diagonal block once, the rest twice)
            return _block_sums(x[start:stop], x[start:], nx[start:stop], nx[start:], widths, stop - start)
        return _block_sums(x[start:stop], other, nx[start:stop], ny, widths, None)

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
