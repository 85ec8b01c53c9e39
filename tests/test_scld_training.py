import numpy as np
import torch

from scldbench.scld.denoiser import Denoiser
from scldbench.scld.schedule import schedule_from_config
from scldbench.scld.training import train_denoiser


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _train(steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    latents = torch.randn(256, 4)
    cond = torch.arange(256) % 2
    profiles = torch.rand(3, 10)
    model = Denoiser(4, profiles, [16], 8, 8, 0.0, "cat")
    start = _flat(model)
    sampled, _ = train_denoiser(
        model,
        latents,
        cond,
        2,
        schedule_from_config("linear", 50, 1e-4, 0.02),
        steps,
        1e-2,
        32,
        0.2,
        False,
        np.random.default_rng(0),
    )
    return start, _flat(model), _flat(sampled)


def test_the_last_step_is_what_samples():
    start, last, sampled = _train(20)
    assert torch.equal(last, sampled) and not torch.equal(start, last)


def test_condition_encoder_is_a_linear_layer_in_another_layout():
    from torch import nn

    from scldbench.scld.conditioning import ConditionEncoder

    profiles = torch.rand(9, 300)
    torch.manual_seed(4)
    ours = ConditionEncoder(300, 32, 16)
    torch.manual_seed(4)
    stock = nn.Sequential(nn.Linear(300, 32), nn.SiLU(), nn.Linear(32, 16))
    assert torch.equal(ours.net[0].weight_t.t(), stock[0].weight) and torch.equal(ours.net[2].weight, stock[2].weight)
    out, expected = ours(profiles), stock(profiles)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(ours.net[0].weight_t.grad.t(), stock[0].weight.grad)
    torch.testing.assert_close(ours.net[0].bias.grad, stock[0].bias.grad)
