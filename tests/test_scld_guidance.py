"""The guidance combination eps = (1 + w) eps(z, c_k) - w eps(z, g), and its branches."""

from __future__ import annotations

import torch

from scldbench.scld.sampling import guided_eps, guided_model

GLOBAL = 5


def fake_model(calls: list[torch.Tensor]):
    # eps depends on the condition only, so each branch is recognisable: eps = condition index
    def model(z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        calls.append(cond.clone())
        return cond.float()[:, None].expand_as(z).clone()

    return model


def test_guided_eps_formula():
    c, g = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 3.0])
    assert torch.allclose(guided_eps(c, g, 0.0), c)
    assert torch.allclose(guided_eps(c, g, -1.0), g)
    assert torch.allclose(guided_eps(c, g, 1.0), 2 * c - g)
    assert torch.allclose(guided_eps(c, g, 0.5), 1.5 * c - 0.5 * g)


def test_guided_model_combines_cluster_and_global_branches():
    z, t = torch.zeros(3, 4), torch.zeros(3, dtype=torch.long)
    cond = torch.tensor([0, 1, 2])
    for w in (-1.0, 0.0, 0.7, 2.0):
        calls: list[torch.Tensor] = []
        out = guided_model(fake_model(calls), GLOBAL, w)(z, t, cond)
        expected = (1 + w) * cond.float() - w * GLOBAL
        assert torch.allclose(out, expected[:, None].expand_as(z))
    # a branch with weight zero is never evaluated
    calls = []
    guided_model(fake_model(calls), GLOBAL, 0.0)(z, t, cond)
    assert len(calls) == 1 and torch.equal(calls[0], cond)
    calls = []
    guided_model(fake_model(calls), GLOBAL, -1.0)(z, t, cond)
    assert len(calls) == 1 and bool((calls[0] == GLOBAL).all())
