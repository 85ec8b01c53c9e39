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


def test_condition_encoder_reads_the_profiles_through_their_span():
    from torch import nn

    from scldbench.scld.conditioning import ConditionEncoder

    cluster_profiles = torch.rand(8, 300)
    # the last condition, the global profile, is a mix of the others: the span has fewer dimensions than rows
    profiles = torch.cat([cluster_profiles, cluster_profiles.mean(0, keepdim=True)])
    torch.manual_seed(4)
    ours = ConditionEncoder(profiles, 32, 16)
    torch.manual_seed(4)
    stock = nn.Sequential(nn.Linear(300, 32), nn.SiLU(), nn.Linear(32, 16))
    # conditions x hidden weights, and at the start the embeddings of a layer over every gene
    assert ours.net[0].weight.shape == (32, 9)
    torch.testing.assert_close(ours(), stock(profiles))
    # a gradient step moves the first layer only within the profiles' span: in gene space, the weights
    # basis @ W' reproduce every output the layer gives
    ours().square().sum().backward()
    with torch.no_grad():
        ours.net[0].weight -= 0.1 * ours.net[0].weight.grad
    basis, _ = torch.linalg.qr(profiles.double().t())
    gene_weight = (ours.net[0].weight.double() @ basis.t()).float()
    torch.testing.assert_close(ours.net[0](ours.coords), profiles @ gene_weight.t() + ours.net[0].bias)
