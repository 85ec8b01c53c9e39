import pytest
import torch

from scldbench.optim import adam


def _train(make_optimiser) -> torch.Tensor:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(20, 32), torch.nn.BatchNorm1d(32), torch.nn.SiLU(), torch.nn.Linear(32, 3)
    )
    opt = make_optimiser(model.parameters())
    draws = torch.Generator().manual_seed(1)
    for _ in range(30):
        x, y = torch.randn(16, 20, generator=draws), torch.randn(16, 3, generator=draws)
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize(
    ("settings", "reference"),
    [
        ({"lr": 1e-3, "betas": (0.5, 0.9), "amsgrad": True},
         lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.5, 0.9), amsgrad=True, foreach=False)),
        ({"lr": 1e-3, "weight_decay": 1e-4}, lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4, foreach=False)),
        ({"lr": 1e-3, "weight_decay": 0.01, "decoupled_weight_decay": True},
         lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=False)),
    ],
)
def test_multi_tensor_adam_trains_to_the_same_weights_bit_for_bit(one_thread, settings, reference):
    assert torch.equal(_train(lambda p: adam(p, **settings)), _train(reference))
