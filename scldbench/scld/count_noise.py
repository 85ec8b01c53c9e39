"""SCLD's count draws: Poisson or negative binomial around decoded means, the latter mostly by inversion.

Nearly every entry of a count matrix has a small mean (on pbmc3k four in five below 0.1), so most draws end
at zero. Inversion of the distribution function turns one uniform per entry into its count, walking up the
probabilities only for the few entries whose uniform lies above P(0): about as many steps as counts drawn.
Entries with a large mean, or a large variance factor 1 + mean / theta (a long walk), are drawn as gamma-Poisson.

One uniform per entry, drawn first, also gives common random numbers: with the generator seeded alike, an
entry drawn at a larger mean gets a count at least as large (NB counts increase with the mean), which the
spread calibration's bisection relies on. (Only the gamma-Poisson entries are drawn afresh.)
"""

from __future__ import annotations

import torch

# inversion only below these: the walk takes one step per count and a long one when 1 + mean / theta is large
_INVERSION_MAX_MEAN = 64.0
_INVERSION_MAX_VARIANCE_FACTOR = 101.0
# with the limits above the walk ends within about 3,000 steps (tail ratio at most 100/101, float64 sums)
_MAX_WALK = 20_000
# the walk takes up to this many steps per pass, as many as keep a pass near this many entries
_MAX_STEPS_AT_ONCE = 256
_WALK_BLOCK_ENTRIES = 2**20


def draw_counts(mean: torch.Tensor, how: str, log_theta: torch.Tensor | None = None) -> torch.Tensor:
    """Counts around `mean` (cells x genes): Poisson, negative binomial (`log_theta` per entry or broadcast over
    rows) or the mean itself."""
    mean = mean.float().clamp(min=0)
    if how == "mean":
        return mean
    if how == "nb":
        if log_theta is None:
            raise ValueError("negative-binomial counts need log_theta")
        return sample_counts(mean, log_theta.exp().to(mean.device).float())
    return torch.poisson(mean)


def sample_counts(mean: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """NB(mean, theta) counts (variance mean + mean^2 / theta; `theta` broadcasts to `mean`) from torch's
    generator on `mean`'s device: inversion for most entries, gamma-Poisson for the rest."""
    mean, theta = mean.contiguous(), theta.expand_as(mean).contiguous()
    u = torch.rand_like(mean)
    # whole-matrix steps in place: each fresh temporary of a cells x genes matrix costs its page faults again
    excess = torch.div(mean, theta)  # mean / theta: the variance factor less one
    inverted = (excess <= _INVERSION_MAX_VARIANCE_FACTOR - 1).logical_and_(mean <= _INVERSION_MAX_MEAN)
    p0 = excess.log1p_().mul_(theta).neg_().exp_()
    counts = torch.zeros_like(mean)
    flat = counts.view(-1)
    walking = torch.nonzero(torch.gt(u, p0).logical_and_(inverted).view(-1)).squeeze(1)
    del p0
    if walking.numel():
        _walk(flat, walking, u.view(-1), mean.view(-1), theta.view(-1))
    rest = torch.nonzero(inverted.logical_not_().view(-1)).squeeze(1)
    if rest.numel():
        m, t = mean.view(-1)[rest], theta.view(-1)[rest]
        flat[rest] = torch.poisson((torch._standard_gamma(t) * (m / t)).clamp_(min=torch.finfo(m.dtype).tiny))
    return counts


def _walk(out: torch.Tensor, idx: torch.Tensor, u: torch.Tensor, mean: torch.Tensor, theta: torch.Tensor) -> None:
    """Counts of the entries `idx` (all above P(0)) into `out`: add P(1), P(2), ... until the distribution
    function passes the entry's uniform. In float64, on the entries still walking; once they are few, many
    steps at a time (cumulative products of the probability ratios), so the long tails take few passes."""
    u, m, t = u[idx].double(), mean[idx].double(), theta[idx].double()
    p = torch.exp(-t * torch.log1p(m / t))
    q = m / (m + t)  # P(k) / P(k - 1) = (k - 1 + theta) / k * q
    cdf, k = p.clone(), 0
    while idx.numel():
        if k > _MAX_WALK:
            raise RuntimeError(f"count inversion did not end within {_MAX_WALK} steps")
        width = max(1, min(_MAX_STEPS_AT_ONCE, _WALK_BLOCK_ENTRIES // idx.numel()))
        ks = torch.arange(k + 1, k + width + 1, device=u.device, dtype=torch.float64)
        ratio = (ks - 1 + t[:, None]) / ks * q[:, None]
        pmf = p[:, None] * torch.cumprod(ratio, dim=1)
        block = cdf[:, None] + torch.cumsum(pmf, dim=1)
        hit = u[:, None] <= block
        found = hit.any(dim=1)
        out[idx[found]] = (k + 1 + hit[found].byte().argmax(dim=1)).to(out.dtype)
        keep = ~found
        idx, u, q, t, p, cdf = idx[keep], u[keep], q[keep], t[keep], pmf[keep, -1], block[keep, -1]
        k += width
