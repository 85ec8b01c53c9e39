"""Quantile mapping of gene distributions: sketches, levels, values and the count mapping, on known distributions."""

from __future__ import annotations

import numpy as np
import torch

from scldbench.scld.autoencoder import normalise
from scldbench.scld.marginals import levels_of, map_counts, sketch_cells, stack_sketches, values_at


def nb_cells(n: int, means: np.ndarray, theta: float, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    rate = rng.gamma(theta, means / theta, size=(n, means.size))
    return torch.as_tensor(rng.poisson(rate), dtype=torch.float32)


def test_sketch_holds_each_genes_zero_share_and_non_zero_range():
    values = torch.tensor([[0.0, 1.0, 0.0], [2.0, 3.0, 0.0], [0.0, 5.0, 0.0], [4.0, 7.0, 0.0]])
    zero_share, knots = sketch_cells(values, levels=3)
    assert torch.allclose(zero_share, torch.tensor([0.5, 0.0, 1.0]))
    assert torch.allclose(knots, torch.tensor([[2.0, 3.0, 4.0], [1.0, 4.0, 7.0], [0.0, 0.0, 0.0]]))


def test_levels_of_cells_under_their_own_sketch_are_uniform():
    torch.manual_seed(0)
    cells = normalise(nb_cells(4000, np.geomspace(0.05, 50, 40), 2.0, seed=1))
    level = levels_of(cells, *sketch_cells(cells, levels=32))
    assert float(level.min()) >= 0 and float(level.max()) <= 1
    assert abs(float(level.mean()) - 0.5) < 0.03
    assert abs(float(level.var()) - 1 / 12) < 0.01


def test_values_at_inverts_levels_of():
    torch.manual_seed(0)
    cells = normalise(nb_cells(3000, np.geomspace(0.5, 50, 20), 3.0, seed=2))
    sketch = sketch_cells(cells, levels=64)
    back = values_at(levels_of(cells, *sketch), *sketch)
    expressed = cells > 0
    assert torch.equal(back > 0, expressed)
    rel = ((back - cells).abs() / cells.clamp(min=1e-6))[expressed]
    assert float(rel.median()) < 0.05


def test_mapping_gives_cells_the_targets_gene_distributions_and_keeps_their_order():
    torch.manual_seed(0)
    genes = np.geomspace(0.1, 40, 30)
    # the model's draw: too little spread and the means off, at the real cells' depth (counts below one after the
    # mapping, in cells shallower than the real ones, round to zero: the zero share holds at equal depth)
    drawn = nb_cells(3000, genes, 5.0, seed=3)
    shift = np.linspace(2, 0.5, genes.size)
    real = nb_cells(3000, genes * shift * genes.sum() / (genes * shift).sum(), 0.8, seed=4)
    source = stack_sketches([sketch_cells(normalise(drawn), 32)])
    target = stack_sketches([sketch_cells(normalise(real), 32)])
    fresh = nb_cells(3000, genes, 5.0, seed=5)
    mapped = map_counts(fresh, 0, source, target)
    assert torch.equal(mapped, mapped.round()) and float(mapped.min()) >= 0
    got, want, before = normalise(mapped), normalise(real), normalise(fresh)
    mean_gap = (got.mean(0) / want.mean(0)).log().abs()
    assert float(mean_gap.max()) < 0.15, mean_gap
    assert float((before.mean(0) / want.mean(0)).log().abs().mean()) > 3 * float(mean_gap.mean())
    zero_gap = ((mapped == 0).float().mean(0) - (real == 0).float().mean(0)).abs()
    assert float(zero_gap.max()) < 0.05, zero_gap
    assert float((got.var(0) / want.var(0)).log().abs().median()) < 0.2
    # a cell high in a gene among the draws stays high among the mapped cells
    order = np.corrcoef(fresh[:, -1].numpy(), mapped[:, -1].numpy())[0, 1]
    assert order > 0.8, order


def test_genes_a_cluster_never_expresses_stay_zero():
    torch.manual_seed(0)
    drawn = nb_cells(500, np.full(6, 3.0), 2.0, seed=6)
    real = drawn.clone()
    real[:, 2] = 0
    source = stack_sketches([sketch_cells(normalise(drawn), 16)])
    target = stack_sketches([sketch_cells(normalise(real), 16)])
    mapped = map_counts(nb_cells(200, np.full(6, 3.0), 2.0, seed=7), 0, source, target)
    assert float(mapped[:, 2].abs().sum()) == 0 and float(mapped.sum()) > 0
