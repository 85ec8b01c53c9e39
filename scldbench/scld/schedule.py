"""Noise schedules as small pure functions, and the quantities DDPM / DDIM derive from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi / 2)."""
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


@dataclass(frozen=True)
class Schedule:
    """Per-step tensors (float64 for exactness; cast at use) indexed by t in [0, T)."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bar: torch.Tensor
    alpha_bar_prev: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_mean_coef_x0: torch.Tensor
    posterior_mean_coef_xt: torch.Tensor

    @property
    def timesteps(self) -> int:
        return int(self.betas.numel())


def make_schedule(betas: torch.Tensor) -> Schedule:
    betas = betas.to(torch.float64)
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, dim=0)
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return Schedule(
        betas=betas,
        alphas=alphas,
        alpha_bar=alpha_bar,
        alpha_bar_prev=alpha_bar_prev,
        posterior_variance=betas * (1 - alpha_bar_prev) / (1 - alpha_bar),
        posterior_mean_coef_x0=betas * alpha_bar_prev.sqrt() / (1 - alpha_bar),
        posterior_mean_coef_xt=(1 - alpha_bar_prev) * alphas.sqrt() / (1 - alpha_bar),
    )


def schedule_from_config(kind: str, timesteps: int, beta_start: float, beta_end: float) -> Schedule:
    betas = linear_betas(timesteps, beta_start, beta_end) if kind == "linear" else cosine_betas(timesteps)
    return make_schedule(betas)


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped to broadcast over `like` (batch first)."""
    out = values.to(like.device)[t].to(like.dtype)
    return out.view(-1, *([1] * (like.dim() - 1)))


def q_sample(s: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps."""
    return _at(s.alpha_bar.sqrt(), t, x0) * x0 + _at((1 - s.alpha_bar).sqrt(), t, x0) * noise


def predict_x0(s: Schedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return (xt - _at((1 - s.alpha_bar).sqrt(), t, xt) * eps) / _at(s.alpha_bar.sqrt(), t, xt)


def posterior_mean(s: Schedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean of q(x_{t-1} | x_t, x_0)."""
    return _at(s.posterior_mean_coef_x0, t, xt) * x0 + _at(s.posterior_mean_coef_xt, t, xt) * xt


def posterior_std(s: Schedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return _at(s.posterior_variance.clamp(min=0).sqrt(), t, like)
