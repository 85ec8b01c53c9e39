import numpy as np
import pytest
import torch

from scldbench.scld.denoiser import Denoiser
from scldbench.scld.schedule import schedule_from_config
from scldbench.scld.training import lr_factor, train_denoiser


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _train(steps: int, ema_decay: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
        ema_decay,
        False,
        np.random.default_rng(0),
    )
    return start, _flat(model), _flat(sampled)


def test_without_ema_the_last_step_is_what_samples():
    _, last, sampled = _train(20, 0.0)
    assert torch.equal(last, sampled)


def test_ema_of_a_short_run_tracks_its_end_not_its_start():
    # with decay 0.999 and no warm-up, 60 steps would leave the average about 94% at the initial weights
    start, last, sampled = _train(60, 0.999)
    assert not torch.equal(last, sampled)
    assert (sampled - last).norm() < 0.5 * (sampled - start).norm()


def test_learning_rate_schedules_follow_their_closed_forms():
    assert [lr_factor("constant", s, 100) for s in (0, 50, 100)] == [1.0, 1.0, 1.0]
    assert lr_factor("cosine", 0, 100) == 1.0
    assert abs(lr_factor("cosine", 50, 100) - 0.5) < 1e-12
    assert abs(lr_factor("cosine", 25, 100) - (1 + np.cos(np.pi / 4)) / 2) < 1e-12
    assert lr_factor("cosine", 100, 100) < 1e-12
    with pytest.raises(ValueError, match="learning-rate schedule"):
        lr_factor("step", 0, 100)
