"""Gaussian kernel means over all pairs of two point sets on a torch device, block by block in float64."""

from __future__ import annotations

import numpy as np
import torch

#: kernel entries per block (512 MiB of float64): the distances and one kernel block are held at a time
BLOCK_ENTRIES = 2**26


def mean_kernels_torch(x: np.ndarray, y: np.ndarray | None, widths: np.ndarray, device: torch.device,
                       *, block_entries: int = BLOCK_ENTRIES) -> np.ndarray:
    """Per width w, the mean of exp(-|x_i - y_j|^2 / w) over all pairs (y None: x with itself, each off-diagonal
    block once and counted twice). Data centred near the origin keeps the squared distances exact to float64."""
    a = torch.as_tensor(np.asarray(x), device=device).to(torch.float64)
    b = a if y is None else torch.as_tensor(np.asarray(y), device=device).to(torch.float64)
    sq_a, sq_b = (a * a).sum(dim=1), (b * b).sum(dim=1)
    neg_inverse = [-1.0 / float(w) for w in widths]
    sums = torch.zeros(len(widths), dtype=torch.float64, device=device)
    step = max(1, block_entries // max(len(b), 1))
    for start in range(0, len(a), step):
        stop = min(start + step, len(a))
        first = start if y is None else 0  # symmetric: columns from the block's own rows on
        cols, sq_cols = b[first:], sq_b[first:]
        distances = torch.addmm(sq_a[start:stop, None] + sq_cols[None, :], a[start:stop], cols.T, alpha=-2.0)
        distances.clamp_(min=0.0)
        for i, scale in enumerate(neg_inverse):
            kernel = torch.exp(distances * scale)
            if y is None:
                own = stop - start
                sums[i] += kernel[:, :own].sum() + 2.0 * kernel[:, own:].sum()
            else:
                sums[i] += kernel.sum()
    return (sums / (len(a) * len(b))).cpu().numpy()
