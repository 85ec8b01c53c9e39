"""The per-coordinate maps between SCLD's latent and its diffusion space."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import elu

from scldbench.scld.latent_scaling import batched_interp, fit_latent_scaler


def _elu_latents(n: int = 3000) -> torch.Tensor:
    """Columns shaped like an ELU bottleneck's: skewed, bounded at -1, one stuck at -1 (a dead unit)."""
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(n, 4, generator=g) * torch.tensor([3.0, 1.0, 0.5, 1.0]) + torch.tensor([1.0, -1.0, 0.0, 0.0])
    latents = elu(pre)
    latents[:, 1] = latents[:, 1].exp()  # heavy right tail
    latents[:, 3] = -1.0
    return latents


def test_batched_interp_matches_numpy_interp_per_column():
    np = pytest.importorskip("numpy")
    xp = torch.tensor([[0.0, 1.0], [1.0, 2.0], [3.0, 2.5]], dtype=torch.float64)
    fp = torch.tensor([[0.0, 10.0], [0.5, 20.0], [1.0, 30.0]], dtype=torch.float64)
    x = torch.tensor([[-1.0, 0.0], [0.5, 1.5], [2.0, 2.25], [5.0, 9.0]], dtype=torch.float64)
    out = batched_interp(x, xp, fp)
    for j in range(2):
        expected = np.interp(x[:, j].numpy(), xp[:, j].numpy(), fp[:, j].numpy())
        assert torch.allclose(out[:, j], torch.as_tensor(expected))


def test_quantile_map_makes_every_moving_coordinate_standard_normal():
    latents = _elu_latents()
    z = fit_latent_scaler(latents, "quantile").to_diffusion(latents)
    moving = z[:, :3]
    assert moving.mean(0).abs().max() < 0.02
    assert (moving.std(0) - 1).abs().max() < 0.05
    skew = ((moving - moving.mean(0)) ** 3).mean(0) / moving.std(0) ** 3
    assert skew.abs().max() < 0.05  # the input's skew is far larger
    assert torch.allclose(z[:, 3], torch.zeros(latents.shape[0]), atol=1e-3)  # a stuck coordinate sits at 0


def test_quantile_map_round_trips_and_keeps_samples_in_the_training_range():
    latents = _elu_latents()
    scaler = fit_latent_scaler(latents, "quantile")
    back = scaler.from_diffusion(scaler.to_diffusion(latents))
    assert torch.allclose(back, latents, atol=2e-2, rtol=1e-2)
    wild = torch.randn(500, 4) * 10
    mapped = scaler.from_diffusion(wild)
    assert (mapped >= latents.min(0).values - 1e-6).all() and (mapped <= latents.max(0).values + 1e-6).all()
    assert torch.allclose(mapped[:, 3], torch.full((500,), -1.0))


def test_standard_map_centres_and_scales():
    latents = _elu_latents()
    scaler = fit_latent_scaler(latents, "standard")
    z = scaler.to_diffusion(latents)
    assert torch.allclose(z[:, :3].mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(scaler.from_diffusion(z), latents, atol=1e-5)
