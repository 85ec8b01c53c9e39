"""Guided reverse diffusion: ancestral DDPM and deterministic DDIM over a strided subset of the steps."""

from __future__ import annotations

from collections.abc import Callable

import torch

from scldbench.scld.schedule import Schedule, posterior_mean, posterior_std, predict_x0

EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def guided_eps(eps_cond: torch.Tensor, eps_global: torch.Tensor, w: float) -> torch.Tensor:
    """eps = (1 + w) eps(z, c_k) - w eps(z, g): w = -1 is the global (holistic) branch, w = 0 the cluster one."""
    return (1 + w) * eps_cond - w * eps_global


def guided_model(model: EpsFn, global_index: int, w: float) -> EpsFn:
    """An eps function over (z, t, cluster index) applying guidance; skips a branch whose weight is zero."""

    def eps(z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if w == 0:
            return model(z, t, cond)
        glob = torch.full_like(cond, global_index)
        if w == -1:
            return model(z, t, glob)
        both = model(torch.cat([z, z]), torch.cat([t, t]), torch.cat([cond, glob]))
        eps_c, eps_g = both.chunk(2)
        return guided_eps(eps_c, eps_g, w)

    return eps


@torch.no_grad()
def ddpm_sample(eps_fn: EpsFn, s: Schedule, cond: torch.Tensor, dim: int, clip_x0: float | None = None) -> torch.Tensor:
    """Ancestral sampling through all T steps with the posterior variance beta_tilde."""
    z = torch.randn(cond.shape[0], dim, device=cond.device)
    for step in reversed(range(s.timesteps)):
        t = torch.full((cond.shape[0],), step, device=cond.device, dtype=torch.long)
        x0 = predict_x0(s, z, t, eps_fn(z, t, cond).float())
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
        mean = posterior_mean(s, x0, z, t)
        z = mean + posterior_std(s, t, z) * torch.randn_like(z) if step > 0 else mean
    return z


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """`steps` evenly spaced steps from T-1 down to 0."""
    return sorted({int(round(v)) for v in torch.linspace(0, timesteps - 1, steps).tolist()}, reverse=True)


@torch.no_grad()
def ddim_sample(
    eps_fn: EpsFn,
    s: Schedule,
    cond: torch.Tensor,
    dim: int,
    steps: int,
    eta: float = 0.0,
    clip_x0: float | None = None,
) -> torch.Tensor:
    z = torch.randn(cond.shape[0], dim, device=cond.device)
    seq = ddim_timesteps(s.timesteps, steps)
    abar = s.alpha_bar.to(cond.device)
    for i, step in enumerate(seq):
        t = torch.full((cond.shape[0],), step, device=cond.device, dtype=torch.long)
        eps = eps_fn(z, t, cond).float()
        a_t = abar[step].float()
        a_prev = abar[seq[i + 1]].float() if i + 1 < len(seq) else torch.ones((), device=cond.device)
        x0 = (z - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
            eps = (z - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
        z = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0 and i + 1 < len(seq):
            z = z + sigma * torch.randn_like(z)
    return z
