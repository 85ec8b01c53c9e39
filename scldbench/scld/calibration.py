"""Latent calibration: per-cluster corrections applied to the diffusion's sampled latents before they are decoded.

A denoiser fitted to a few hundred cells per cluster leaves each cluster's samples slightly off where its training
cells sit (measured in the README); the offset is estimated once after training, from latents the model samples
for the training cells' own clusters, and added to every later sample of that cluster. The spread factor widens
samples about their cluster's training mean: the decoder turns latent variation into less expression variation than
real cells carry.
"""

from __future__ import annotations

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
    offsets = torch.zeros(n_clusters, real.shape[1], device=real.device, dtype=torch.float32)
    for k in range(n_clusters):
        in_real, in_sampled = real_cluster == k, sampled_cluster == k
        n = int(in_real.sum())
        if n == 0 or not bool(in_sampled.any()):
            continue
        gap = real[in_real].float().mean(0) - sampled[in_sampled].float().mean(0)
        offsets[k] = gap * (n / (n + prior_cells))
    return offsets


def cluster_means(latents: torch.Tensor, cluster: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """(n_clusters x dim) mean latent of each cluster; zero for a cluster without cells."""
    sums = torch.zeros(n_clusters, latents.shape[1], device=latents.device, dtype=torch.float32)
    sums.index_add_(0, cluster, latents.float())
    counts = torch.bincount(cluster, minlength=n_clusters).clamp(min=1).to(sums)
    return sums / counts[:, None]


def spread_about(z: torch.Tensor, centre: torch.Tensor, factor: float) -> torch.Tensor:
    """`z` with its deviations from `centre` (one row per cell) scaled by `factor`."""
    return centre + factor * (z - centre)
