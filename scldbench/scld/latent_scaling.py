"""Per-dimension maps between the autoencoder's latent and the space the diffusion works in.

The DDPM's forward process assumes data of unit scale, and its Gaussian noise suits Gaussian-like marginals.
An autoencoder's latent has neither: after an ELU bottleneck the coordinates are bounded below at -1, skewed,
heavy-tailed, and some barely move. "standard" only centres and scales each coordinate; "quantile" maps each
coordinate through its empirical quantiles onto a standard normal, so the diffusion learns only how the
coordinates depend on each other and the condition. Mapping back sends every sample into the range the
training latents span.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# standard-normal bound of the quantile map: u is kept within [_TAIL, 1 - _TAIL]
_TAIL = 1e-7
_QUANTILE_MAX_VALUES = 2**24


def batched_interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor, right: bool = False) -> torch.Tensor:
    """Piecewise-linear interpolation of every column of `x` (n, d) through knots `xp` -> `fp` (m, d).

    `xp` is non-decreasing down each column; values beyond the knots take the end values. On a flat run of
    knots the value at the left (or, with `right`, the right) end of the run is used.
    """
    xp_t, fp_t = xp.T.contiguous(), fp.T.contiguous()
    hi = torch.searchsorted(xp_t, x.T.contiguous(), right=right).clamp(1, xp.shape[0] - 1)
    lo = hi - 1
    x0, x1 = xp_t.gather(1, lo), xp_t.gather(1, hi)
    f0, f1 = fp_t.gather(1, lo), fp_t.gather(1, hi)
    span = x1 - x0
    flat = torch.full_like(span, 1.0 if right else 0.0)
    weight = torch.where(span > 0, (x.T - x0) / span.clamp(min=torch.finfo(span.dtype).tiny), flat)
    return (f0 + weight.clamp(0, 1) * (f1 - f0)).T


def normal_quantile(u: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtri(u.clamp(_TAIL, 1 - _TAIL))


@dataclass
class LatentScaler:
    """Fitted per-coordinate map; `knots` (levels x dims) only for the quantile kind."""

    kind: str
    mean: torch.Tensor
    std: torch.Tensor
    knots: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return int(self.mean.numel())

    def _levels(self) -> torch.Tensor:
        """The quantile level of every knot, shaped like `knots`."""
        knots = self.knots
        levels = torch.linspace(0, 1, knots.shape[0], device=knots.device, dtype=knots.dtype)
        return levels[:, None].expand_as(knots)

    def to_diffusion(self, latents: torch.Tensor) -> torch.Tensor:
        if self.knots is None:
            return (latents - self.mean) / self.std
        x, levels = latents.to(self.knots.dtype), self._levels()
        # ties (a coordinate stuck at one value) get the middle of their run of levels
        u = 0.5 * (batched_interp(x, self.knots, levels) + batched_interp(x, self.knots, levels, right=True))
        return normal_quantile(u).to(latents.dtype)

    def from_diffusion(self, z: torch.Tensor) -> torch.Tensor:
        if self.knots is None:
            return z * self.std + self.mean
        u = torch.special.ndtr(z.to(self.knots.dtype))
        return batched_interp(u, self._levels(), self.knots).to(z.dtype)


def fit_latent_scaler(latents: torch.Tensor, kind: str, n_knots: int = 1000) -> LatentScaler:
    """Fit on the training latents (cells x dims); the quantile kind keeps `n_knots` levels (at most one per cell)."""
    mean, std = latents.mean(0), latents.std(0).clamp(min=1e-4)
    if kind == "standard":
        return LatentScaler(kind, mean, std)
    # torch.quantile takes at most 2**24 values: an even stride through larger sets
    stride = max(1, -(-latents.numel() // _QUANTILE_MAX_VALUES))
    rows = latents[::stride].double()
    levels = torch.linspace(0, 1, min(n_knots, rows.shape[0]), device=latents.device, dtype=torch.float64)
    knots = torch.quantile(rows, levels, dim=0)
    return LatentScaler(kind, mean, std, knots.cummax(dim=0).values)
