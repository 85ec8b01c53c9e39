"""CFGen: the flow-matching maths, the ODE solvers, guidance, and the generator on small data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scldbench import Generator, ScldbenchError
from scldbench.baselines.cfgen import CFGen
from scldbench.baselines.cfgen.flow import guided_velocity, integrate, interpolate, target_velocity
from scldbench.baselines.cfgen.modules import VelocityField
from scldbench.baselines.cfgen.training import train_flow
from tests.conftest import make_counts

TINY = {"latent_dim": 4, "encoder_layers": [32, 16], "ae_epochs": 20, "ae_batch_size": 32, "flow_hidden": 32,
        "flow_blocks": 2, "embedding_dim": 16, "flow_epochs": 20, "flow_batch_size": 32, "ode_steps": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return make_counts(n_cells=150, n_genes=45, n_groups=3, seed=1)


@pytest.fixture(scope="module")
def model(data) -> CFGen:
    return CFGen(**TINY, seed=0, device="cpu").fit(data, "group")


# ---------------------------------------------------------------------- flow maths
def test_interpolation_runs_from_noise_to_data_at_constant_velocity():
    x0, x1 = torch.randn(5, 3), torch.randn(5, 3)
    torch.testing.assert_close(interpolate(x0, x1, torch.zeros(5)), x0)
    torch.testing.assert_close(interpolate(x0, x1, torch.ones(5)), x1)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], requires_grad=True)
    xt = interpolate(x0, x1, t)
    torch.testing.assert_close(xt.detach(), x0 + t.detach()[:, None] * (x1 - x0))
    # d x_t / dt, per row, is the regression target
    grads = torch.stack([torch.autograd.grad(xt[:, j].sum(), t, retain_graph=True)[0] for j in range(3)], dim=1)
    torch.testing.assert_close(grads, target_velocity(x0, x1))


def test_solvers_integrate_known_fields():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 2, dtype=torch.float64, generator=gen)
    shift = torch.randn(4, 2, dtype=torch.float64, generator=gen)
    # a constant field: one Euler step is exact
    torch.testing.assert_close(integrate(lambda x, t: shift, x0, 1), x0 + shift)
    # v = t: midpoint is exact, Euler with n steps is short by 1 / (2n)
    along_t = lambda x, t: t[:, None].expand_as(x)  # noqa: E731
    torch.testing.assert_close(integrate(along_t, x0, 3, "midpoint"), x0 + 0.5)
    torch.testing.assert_close(integrate(along_t, x0, 10, "euler"), x0 + 0.5 - 1 / 20)
    # a linear field v = A x: x(1) = expm(A) x(0)
    a = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=torch.float64)
    exact = x0 @ torch.linalg.matrix_exp(a).T
    euler = integrate(lambda x, t: x @ a.T, x0, 1000, "euler")
    midpoint = integrate(lambda x, t: x @ a.T, x0, 50, "midpoint")
    assert (euler - exact).abs().max() < 2e-3
    # second order: 50 midpoint steps beat 1,000 Euler steps
    assert (midpoint - exact).abs().max() < min(5e-4, (euler - exact).abs().max())
    with pytest.raises(ValueError, match="solver"):
        integrate(along_t, x0, 2, "rk45")


def test_guidance_convention():
    v_c, v_null = torch.randn(6, 3), torch.randn(6, 3)
    torch.testing.assert_close(guided_velocity(v_c, v_null, 0.0), v_c)
    torch.testing.assert_close(guided_velocity(v_c, v_null, -1.0), v_null)
    torch.testing.assert_close(guided_velocity(v_c, v_null, 2.0), v_c + 2.0 * (v_c - v_null))


def test_flow_matching_learns_where_each_label_lives():
    torch.manual_seed(0)
    centres = torch.tensor([[3.0, 0.0], [-3.0, 0.0]])
    labels = torch.arange(400) % 2
    latents = centres[labels] + 0.3 * torch.randn(400, 2)
    field = VelocityField(2, 2, hidden=64, n_blocks=2, embedding_dim=32, dropout=0.0, condition_on_size=False)
    train_flow(field, latents, labels, torch.zeros(400), epochs=40, batch_size=100, lr=3e-3, weight_decay=0.0,
               label_dropout=0.2, grad_clip=1.0, rng=np.random.default_rng(0))
    with torch.no_grad():
        for k in (0, 1):
            y = torch.full((300,), k)
            out = integrate(lambda x, t, y=y: field(x, t, y, torch.zeros(300)), torch.randn(300, 2), 20, "midpoint")
            assert (out.mean(0) - centres[k]).norm() < 0.6, f"label {k} drawn around {out.mean(0).tolist()}"
        y = torch.full((400,), field.null_index)
        out = integrate(lambda x, t: field(x, t, y, torch.zeros(400)), torch.randn(400, 2), 20, "midpoint")
        share = (out[:, 0] > 0).float().mean()
        assert 0.25 < share < 0.75, "the null label must reach both modes"


# ---------------------------------------------------------------------- the generator
def test_conditional_samples_are_counts_of_the_requested_labels(model, data):
    out = model.sample(30, labels={"g0": 10, "g1": 5, "g2": 15})
    assert out.obs["group"].astype(str).tolist() == ["g0"] * 10 + ["g1"] * 5 + ["g2"] * 15
    x = np.asarray(out.X)
    assert np.array_equal(x, np.round(x)) and x.min() >= 0 and x.sum() > 0
    assert list(out.var_names) == list(data.var_names)


def test_libraries_come_from_the_requested_cluster():
    counts = make_counts(n_cells=120, n_genes=30, n_groups=2, seed=2)
    x = counts.X.toarray()
    x[counts.obs["group"] == "g1"] *= 8  # cluster g1 is sequenced eight times deeper
    counts.X = x
    gen = CFGen(**TINY, seed=0, device="cpu").fit(counts, "group")
    lib = {k: np.median(gen.sample(60, labels=k).X.sum(1)) for k in ("g0", "g1")}
    real = {k: np.median(x[counts.obs["group"] == k].sum(1)) for k in ("g0", "g1")}
    for k in lib:
        assert 0.7 < lib[k] / real[k] < 1.4, (lib, real)


def test_guidance_changes_the_cells_and_zero_is_the_default(model):
    plain = model.sample(20, labels="g1", seed=4).X
    np.testing.assert_array_equal(model.sample(20, labels="g1", seed=4, guidance=0.0).X, plain)
    assert not np.array_equal(model.sample(20, labels="g1", seed=4, guidance=2.0).X, plain)


def test_seeds_reproduce_exactly(data):
    short = TINY | {"ae_epochs": 3, "flow_epochs": 3}
    a = CFGen(**short, seed=5, device="cpu").fit(data, "group").sample(20, seed=9).X
    b = CFGen(**short, seed=5, device="cpu").fit(data, "group").sample(20, seed=9).X
    np.testing.assert_array_equal(a, b)


def test_save_load_round_trip_gives_identical_samples(model, tmp_path):
    model.save(tmp_path / "cfgen")
    loaded = Generator.load(tmp_path / "cfgen")
    assert isinstance(loaded, CFGen) and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.sample(15, labels="g2", seed=3, guidance=1.0).X,
                                  model.sample(15, labels="g2", seed=3, guidance=1.0).X)


def test_fitted_without_labels_samples_unconditionally(data):
    gen = CFGen(**TINY, seed=0, device="cpu").fit(data)
    out = gen.sample(12, guidance=1.0)
    assert out.shape == (12, data.n_vars) and "group" not in out.obs
    with pytest.raises(ScldbenchError, match="without labels"):
        gen.sample(3, labels="g0")


@pytest.mark.parametrize(("params", "match"), [({"ode_solver": "rk4"}, "ode_solver"),
                                               ({"ode_steps": 0}, "ode_steps"),
                                               ({"label_dropout": 1.5}, "label_dropout"),
                                               ({"encoder_layers": []}, "layer sizes")])
def test_bad_parameters_are_refused(params, match):
    with pytest.raises(ScldbenchError, match=match):
        CFGen(**params)
