"""Latent calibration: per-cluster corrections applied to the diffusion's sampled latents before they are decoded.

A denoiser fitted to a few hundred cells per cluster leaves each cluster's samples slightly off where its training
cells sit (measured in docs/decisions/scld.md); the offset is estimated once after training, from latents the model
samples for the training cells' own clusters, and added to every later sample of that cluster. The spread factor widens
samples about their cluster's training mean: the decoder can turn latent variation into less expression variation
than real cells carry, and the factor that makes a draw's within-cluster variance match the training cells' is
found by bisection (the variance grows with the factor).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def cluster_mean_offsets(
    real: torch.Tensor,
    real_cluster: torch.Tensor,
    sampled: torch.Tensor,
    sampled_cluster: torch.Tensor,
    n_clusters: int,
    prior_cells: float,
) -> torch.Tensor:
    """(n_clusters x dim) mean of `real` minus mean of `sampled`, per cluster, each shrunk towards zero by
    n / (n + `prior_cells`) with n the cluster's real cells; zero for a cluster missing from either side."""
    gap = cluster_means(real, real_cluster, n_clusters) - cluster_means(sampled, sampled_cluster, n_clusters)
    n_real = torch.bincount(real_cluster, minlength=n_clusters).to(gap)
    n_sampled = torch.bincount(sampled_cluster, minlength=n_clusters)
    both = (n_real > 0) & (n_sampled > 0)
    weight = torch.where(both, n_real / (n_real + prior_cells).clamp(min=1e-12), torch.zeros_like(n_real))
    return gap * weight[:, None]


def cluster_means(latents: torch.Tensor, cluster: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """(n_clusters x dim) mean latent of each cluster; zero for a cluster without cells."""
    sums = torch.zeros(n_clusters, latents.shape[1], device=latents.device, dtype=torch.float32)
    sums.index_add_(0, cluster, latents.float())
    counts = torch.bincount(cluster, minlength=n_clusters).clamp(min=1).to(sums)
    return sums / counts[:, None]


def spread_about(z: torch.Tensor, centre: torch.Tensor, factor: float) -> torch.Tensor:
    """`z` with its deviations from `centre` (one row per cell) scaled by `factor`."""
    return centre + factor * (z - centre)


def within_cluster_variance(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], n_clusters: int) -> float:
    """Mean over cells of the summed per-gene variance within each cell's cluster, expression scaled to a common
    library size; `batches` yields (counts, cluster index) pairs."""
    count = sums = squares = None
    for x, cluster in batches:
        x = x.double()
        x = x / x.sum(1, keepdim=True).clamp(min=1.0)
        if sums is None:
            count = torch.zeros(n_clusters, dtype=torch.float64, device=x.device)
            sums = torch.zeros(n_clusters, x.shape[1], dtype=torch.float64, device=x.device)
            squares = torch.zeros_like(sums)
        count.index_add_(0, cluster, torch.ones(len(x), dtype=torch.float64, device=x.device))
        sums.index_add_(0, cluster, x)
        squares.index_add_(0, cluster, x * x)
    if sums is None:
        raise ValueError("within_cluster_variance needs at least one batch")
    n = count.clamp(min=1.0)[:, None]
    return float((squares - sums * sums / n).sum() / count.sum())


def fit_spread(variance_at: Callable[[float], float], target: float, low: float, high: float, steps: int) -> float:
    """The factor in [`low`, `high`] where the increasing `variance_at(factor)` meets `target`, by bisection;
    the nearer bound when it stays on one side."""
    if variance_at(low) >= target:
        return low
    if variance_at(high) <= target:
        return high
    for _ in range(steps):
        mid = (low + high) / 2
        if variance_at(mid) < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2
