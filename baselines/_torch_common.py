"""Building blocks shared by the neural baselines (scGAN/cscGAN, ACTIVA, count VAE).

Scaling of counts to the networks' input, MLP construction, mini-batches drawn with torch's (seeded) global
RNG, learning-rate decay, library-size priors per cluster, and the way back from a profile to counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from scldbench.counts.numpy import normalise_total
from scldbench.data.counts import ArrayLike, to_dense
from scldbench.errors import ScldbenchError

#: the fixed total scGAN and ACTIVA normalise every cell to
SCGAN_TOTAL = 20_000.0
COUNT_MODES = ("round", "poisson", "none")


def dense_counts(x: ArrayLike) -> np.ndarray:
    return to_dense(x, np.float32)


def scale_counts(counts: np.ndarray, total: float = SCGAN_TOTAL, log: bool = True) -> np.ndarray:
    """The scGAN/ACTIVA input: counts normalised to a fixed total, then log1p (when `log`)."""
    x = normalise_total(counts, total, dtype=counts.dtype, divide_last=True)
    return np.log1p(x) if log else x


def unscale(values: torch.Tensor, log: bool = True) -> torch.Tensor:
    """Inverse of the log step of `scale_counts` (clamped at zero)."""
    return torch.expm1(values).clamp_min(0.0) if log else values.clamp_min(0.0)


def mlp(
    sizes: Sequence[int],
    *,
    activation: type[nn.Module] = nn.ReLU,
    batch_norm: bool = False,
    dropout: float = 0.0,
    last_activation: bool = False,
) -> nn.Sequential:
    """Linear layers through `sizes`, each hidden layer followed by [batch norm], activation, [dropout]."""
    layers: list[nn.Module] = []
    n_layers = len(sizes) - 1
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < n_layers - 1 or last_activation:
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(activation())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def check_sizes(name: str, sizes: Sequence[int]) -> list[int]:
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ScldbenchError(f"{name} must be a non-empty list of positive layer sizes, got {sizes!r}")
    return sizes


def check_count_mode(mode: str) -> str:
    if mode not in COUNT_MODES:
        raise ScldbenchError(f"count_sampling must be one of {', '.join(COUNT_MODES)}, got {mode!r}")
    return mode


def batch_size_for(n: int, batch_size: int) -> int:
    return max(1, min(int(batch_size), n))


def epoch_batches(n: int, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """One shuffled pass over `n` items; a last batch of one is dropped (batch norm cannot use it)."""
    order = torch.randperm(n).to(device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if idx.numel() > 1 or n == 1:
            yield idx


def endless_batches(n: int, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Mini-batches for step-based training: epoch after epoch, reshuffled each time."""
    while True:
        yield from epoch_batches(n, batch_size, device)


def exponential_decay(optimiser: torch.optim.Optimizer, rate: float, every: int) -> torch.optim.lr_scheduler.LambdaLR:
    """lr * rate ** (step / every), stepped once per optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: rate ** (step / max(every, 1)))


def encode_labels(labels: np.ndarray, categories: Sequence[str], device: torch.device) -> torch.Tensor:
    index = {c: i for i, c in enumerate(categories)}
    return torch.as_tensor([index[str(lab)] for lab in labels], dtype=torch.long, device=device)


class LibraryPrior:
    """Library sizes seen in training, per label: drawn back empirically or from a log-normal fit."""

    def __init__(self, counts: np.ndarray, labels: np.ndarray | None) -> None:
        log_lib = np.log(np.maximum(counts.sum(axis=1), 1.0))
        self.pooled = log_lib
        self.by_label: dict[str, np.ndarray] = {}
        if labels is not None:
            self.by_label = {str(lab): log_lib[labels == lab] for lab in np.unique(labels)}

    def _pool(self, label: str | None) -> np.ndarray:
        if label is None or str(label) not in self.by_label:
            return self.pooled
        return self.by_label[str(label)]

    def lognormal(self, label: str | None) -> tuple[float, float]:
        pool = self._pool(label)
        return float(pool.mean()), float(pool.std()) if pool.size > 1 else 0.0

    def draw(self, labels: np.ndarray | None, n: int, rng: np.random.Generator, kind: str = "empirical") -> np.ndarray:
        """`n` library sizes; per label when `labels` (length n) is given, else from all training cells."""
        keys = np.full(n, None, dtype=object) if labels is None else np.asarray(labels, dtype=object)
        out = np.empty(n, dtype=np.float64)
        for key in dict.fromkeys(keys.tolist()):
            where = np.flatnonzero(keys == key) if key is not None else np.arange(n)
            if kind == "lognormal":
                mu, sd = self.lognormal(key)
                out[where] = rng.normal(mu, sd, size=where.size)
            else:
                out[where] = rng.choice(self._pool(key), size=where.size)
        return np.exp(out)


def to_counts(profiles: np.ndarray, libraries: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Non-negative profiles rescaled to `libraries` per cell, then rounded, Poisson-sampled, or kept."""
    p = np.clip(np.nan_to_num(profiles.astype(np.float64), nan=0.0, posinf=0.0), 0.0, None)
    scaled = normalise_total(p, libraries, divide_last=True)
    if mode == "poisson":
        scaled = rng.poisson(scaled)
    elif mode == "round":
        scaled = np.round(scaled)
    return scaled.astype(np.float32)


@torch.no_grad()
def in_chunks(fn: Callable[[int, int], torch.Tensor], n: int, chunk: int = 4096) -> list[torch.Tensor]:
    """Call `fn(start, stop)` over [0, n) in chunks so large requests do not exhaust memory."""
    return [fn(start, min(start + chunk, n)) for start in range(0, n, chunk)]
