import pytest
import torch

from scldbench.optim import adam


def _updates(make_optimiser, steps: int = 40) -> list[torch.Tensor]:
    """The weights after each step, for the same start and the same gradients (two tensors of two shapes)."""
    draws = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(64, 33, generator=draws)),
              torch.nn.Parameter(torch.randn(7, generator=draws))]
    opt = make_optimiser(params)
    trajectory = []
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=draws)
        opt.step()
        trajectory.append(torch.cat([p.detach().flatten() for p in params]))
    return trajectory


@pytest.mark.parametrize(
    ("settings", "reference"),
    [
        ({"lr": 1e-3, "betas": (0.5, 0.9), "amsgrad": True},
         lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.5, 0.9), amsgrad=True, foreach=False)),
        ({"lr": 1e-3, "weight_decay": 1e-4}, lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4, foreach=False)),
        ({"lr": 1e-2, "weight_decay": 0.01, "decoupled_weight_decay": True},
         lambda p: torch.optim.AdamW(p, lr=1e-2, foreach=False)),
    ],
)
def test_fused_adam_makes_the_reference_updates(one_thread, settings, reference):
    ours, theirs = _updates(lambda p: adam(p, **settings)), _updates(reference)
    start = theirs[0]
    for mine, ref in zip(ours, theirs, strict=True):
        # float rounding only: far below one step's movement (lr), and the weights really move
        torch.testing.assert_close(mine, ref, rtol=0, atol=1e-6)
    assert (theirs[-1] - start).abs().max() > 10 * settings["lr"]


def test_adam_uses_the_fused_kernel():
    opt = adam([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    assert opt.defaults["fused"] is True
