"""Quantile mapping of each gene's normalised expression, cluster by cluster, from the model's draws onto real cells.

A sketch summarises one cluster's cells gene by gene: the share of cells where the gene is zero and `levels`
evenly spaced quantiles (minimum to maximum) of its non-zero values, all on expression normalised to
NORM_TARGET per cell. A generated cell is mapped gene by gene: its value's level under the draw's sketch (a zero
takes a uniform level below the draw's zero share), then the value at that level under the training cells'
sketch, scaled back to the cell's own library size. The joint structure across genes is the model's; each gene's
distribution within a cluster becomes the training cells'.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scldbench.scld.autoencoder import NORM_TARGET, normalise


@dataclass
class MarginalSketch:
    zero_share: torch.Tensor  # clusters x genes
    knots: torch.Tensor  # clusters x genes x levels, ascending along levels

    @property
    def levels(self) -> int:
        return self.knots.shape[-1]


def sketch_cells(values: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero share (genes) and non-zero quantiles (genes x levels) of one cluster's normalised expression."""
    n = values.shape[0]
    ordered = torch.sort(values.float(), dim=0).values
    nonzero = (ordered > 0).sum(dim=0)
    zero_share = 1.0 - nonzero.float() / n
    probs = torch.linspace(0, 1, levels, device=values.device)
    # the non-zero values of each gene occupy the last `nonzero` rows of its sorted column
    pos = (n - nonzero)[None, :].float() + probs[:, None] * (nonzero - 1).clamp(min=0)[None, :].float()
    lo = pos.floor().long().clamp(0, n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    frac = pos - lo.float()
    knots = ordered.gather(0, lo) * (1 - frac) + ordered.gather(0, hi) * frac
    return zero_share, knots.T.contiguous()


def stack_sketches(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> MarginalSketch:
    # half precision keeps a saved model small (clusters x genes x levels); three significant digits suffice
    return MarginalSketch(torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts]).half())


def levels_of(values: torch.Tensor, zero_share: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Each value's level in [0, 1] (cells x genes) under one cluster's sketch (genes, genes x levels)."""
    knots = knots.float()
    n_levels = knots.shape[1]
    genes = torch.arange(knots.shape[0], device=values.device)[None, :]
    right = torch.searchsorted(knots, values.T.contiguous()).T.clamp(1, n_levels - 1)
    left = right - 1
    below, above = knots[genes, left], knots[genes, right]
    within = ((values - below) / (above - below).clamp(min=1e-12)).clamp(0, 1)
    step = (left.float() + within) / (n_levels - 1)
    step = torch.where(values <= knots[:, :1].T, torch.zeros_like(step), step)
    step = torch.where(values >= knots[:, -1:].T, torch.ones_like(step), step)
    nonzero_level = zero_share + (1 - zero_share) * step
    zero_level = torch.rand_like(values) * zero_share
    return torch.where(values > 0, nonzero_level, zero_level)


def values_at(level: torch.Tensor, zero_share: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """The values (cells x genes) at the given levels under one cluster's sketch; zero below its zero share."""
    knots = knots.float()
    n_levels = knots.shape[1]
    genes = torch.arange(knots.shape[0], device=level.device)[None, :]
    step = ((level - zero_share) / (1 - zero_share).clamp(min=1e-12)).clamp(0, 1)
    pos = step * (n_levels - 1)
    left = pos.floor().long().clamp(0, n_levels - 2)
    frac = pos - left.float()
    value = knots[genes, left] * (1 - frac) + knots[genes, left + 1] * frac
    return torch.where(level < zero_share, torch.zeros_like(value), value)


def map_counts(
    counts: torch.Tensor, cluster: int, source: MarginalSketch, target: MarginalSketch
) -> torch.Tensor:
    """Counts of cells of one cluster mapped from the draw's gene distributions (`source`) onto `target`'s.

    Mapped values are rounded up or down at random in proportion, so counts stay whole and unbiased.
    """
    library = counts.sum(dim=1, keepdim=True)
    level = levels_of(normalise(counts), source.zero_share[cluster], source.knots[cluster])
    mapped = values_at(level, target.zero_share[cluster], target.knots[cluster]) * library / NORM_TARGET
    whole = mapped.floor()
    return whole + (torch.rand_like(mapped) < mapped - whole).float()
