"""Gamma-Poisson count draws, and the gamma noise they share when the same cells are drawn again.

A negative-binomial count is Poisson(mean * G / theta) with G ~ Gamma(theta, 1). G depends on the dispersion
alone, not on the mean, so a sequence of draws that differ only in their means (the spread calibration's trials
decode the same latents at several spread factors) can reuse one set of G and draw only the Poisson part again.
Common noise also makes the trials differ by their factor alone, which the calibration's bisection assumes.
"""

from __future__ import annotations

import torch


def _rng_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng_state(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


class SharedGammaNoise:
    """Standard-gamma draws kept from a first pass of count draws and handed out again, in order, on later passes.

    The first pass records each draw with the generator's state after it; a later pass (after `rewind`) returns
    the recorded draw and restores that state, so its Poisson draws start where the first pass's did.
    """

    def __init__(self) -> None:
        self._draws: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._next: int | None = None  # None while recording

    def rewind(self) -> None:
        """Hand out the recorded draws again from the first."""
        self._next = 0

    def standard_gamma(self, theta: torch.Tensor) -> torch.Tensor:
        if self._next is None:
            draw = torch._standard_gamma(theta)
            self._draws.append((draw, _rng_state(theta.device)))
            return draw
        draw, state = self._draws[self._next]
        if draw.shape != theta.shape:
            raise ValueError(f"shared gamma noise of shape {tuple(draw.shape)} asked for {tuple(theta.shape)}")
        self._next += 1
        _set_rng_state(state, theta.device)
        return draw


def draw_counts(
    mean: torch.Tensor, how: str, log_theta: torch.Tensor | None = None, *, noise: SharedGammaNoise | None = None
) -> torch.Tensor:
    """Counts around `mean` (cells x genes): Poisson, gamma-Poisson (NB, gamma noise from `noise` when given) or
    the mean itself."""
    mean = mean.float().clamp(min=0)
    if how == "mean":
        return mean
    if how == "nb":
        if log_theta is None:
            raise ValueError("negative-binomial counts need log_theta")
        theta = log_theta.exp().to(mean.device).expand_as(mean)
        gamma = noise.standard_gamma(theta) if noise is not None else torch._standard_gamma(theta)
        # the arithmetic of torch.distributions.Gamma(theta, theta / mean).sample()
        rate = (gamma / (theta / mean.clamp(min=1e-8))).clamp_(min=torch.finfo(gamma.dtype).tiny)
        return torch.poisson(rate)
    return torch.poisson(mean)
