"""The neural baselines (scGAN, cscGAN, ACTIVA, count VAE) on a small real PBMC subset, with tiny networks."""

from __future__ import annotations

import json
from collections.abc import Callable

import anndata as ad
import numpy as np
import pytest
import torch

from scldbench import Generator, ScldbenchError
from scldbench.baselines._torch_common import LibraryPrior, scale_counts, to_counts, unscale
from scldbench.baselines.activa import Activa
from scldbench.baselines.cfgen import CFGen
from scldbench.baselines.scgan import CscGAN, ScGAN
from scldbench.baselines.vae import CountVAE
from scldbench.registry import get_generator

TINY_GAN = {"steps": 6, "latent_dim": 8, "generator_layers": [16, 32], "critic_layers": [32, 16], "batch_size": 32,
            "critic_steps": 2}
TINY_ACTIVA = {"epochs": 3, "warmup_epochs": 1, "latent_dim": 8, "encoder_layers": [32, 16],
               "classifier_layers": [32, 16], "classifier_epochs": 100, "batch_size": 32, "draw_batch": 64}
TINY_VAE = {"epochs": 4, "kl_warmup_epochs": 2, "latent_dim": 4, "hidden_layers": [16], "batch_size": 32}
TINY_CFGEN = {"latent_dim": 4, "encoder_layers": [32, 16], "ae_epochs": 3, "ae_batch_size": 32, "flow_hidden": 32,
              "flow_blocks": 2, "embedding_dim": 16, "flow_epochs": 3, "flow_batch_size": 32, "ode_steps": 4}

FACTORIES: dict[str, Callable[..., Generator]] = {
    "scgan": lambda **kw: ScGAN(**TINY_GAN, **kw),
    "cscgan": lambda **kw: CscGAN(**TINY_GAN, **kw),
    "activa": lambda **kw: Activa(**TINY_ACTIVA, **kw),
    "vae": lambda **kw: CountVAE(**TINY_VAE, **kw),
    "vae-unconditional": lambda **kw: CountVAE(conditional=False, **TINY_VAE, **kw),
    "cfgen": lambda **kw: CFGen(**TINY_CFGEN, **kw),
}
CONDITIONAL = ["cscgan", "activa", "vae", "cfgen"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small(pbmc_prepared) -> ad.AnnData:
    """120 real training cells (stratified by cluster) x the 150 most expressed genes."""
    train = pbmc_prepared.train
    rng = np.random.default_rng(0)
    labels = train.obs["cluster"].astype(str).to_numpy()
    keep = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(labels == lab), size=min(15, (labels == lab).sum()), replace=False)
        for lab in np.unique(labels)
    ]))[:120]
    genes = np.argsort(-np.asarray(train.X.sum(axis=0)).ravel())[:150]
    return train[keep][:, np.sort(genes)].copy()


def fitted(name: str, data: ad.AnnData, seed: int = 0) -> Generator:
    return FACTORIES[name](seed=seed, device="cpu").fit(data, labels_key="cluster")


@pytest.fixture(scope="module")
def models(small) -> dict[str, Generator]:
    return {name: fitted(name, small) for name in FACTORIES}


@pytest.mark.parametrize("name", list(FACTORIES))
def test_samples_are_counts_in_the_same_genes(models, small, name):
    out = models[name].sample(40)
    x = np.asarray(out.X)
    assert out.shape == (40, small.n_vars)
    assert list(out.var_names) == list(small.var_names)
    assert np.isfinite(x).all() and x.min() >= 0
    assert np.allclose(x, np.round(x)), "default outputs are integer counts"
    assert x.sum() > 0


@pytest.mark.parametrize("name", list(FACTORIES))
def test_seeded_runs_repeat_exactly(small, name):
    a = fitted(name, small, seed=3).sample(30, seed=11).X
    b = fitted(name, small, seed=3).sample(30, seed=11).X
    c = fitted(name, small, seed=4).sample(30, seed=11).X
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c), "a different seed must change the model"


@pytest.mark.parametrize("name", list(FACTORIES))
def test_save_load_round_trip(models, tmp_path, name):
    model = models[name]
    model.save(tmp_path / name)
    loaded = Generator.load(tmp_path / name)
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    json.dumps(loaded.get_params())
    np.testing.assert_array_equal(loaded.sample(25, seed=5).X, model.sample(25, seed=5).X)


@pytest.mark.parametrize("name", CONDITIONAL)
def test_conditional_samples_honour_requested_labels(models, small, name):
    model = models[name]
    cats = model.label_categories
    request = {cats[0]: 7, cats[-1]: 5}
    out = model.sample(12, labels=request)
    assert out.obs["cluster"].astype(str).tolist() == [cats[0]] * 7 + [cats[-1]] * 5
    per_cell = model.sample(3, labels=[cats[1], cats[0], cats[1]])
    assert per_cell.obs["cluster"].astype(str).tolist() == [cats[1], cats[0], cats[1]]


@pytest.mark.parametrize("name", CONDITIONAL)
def test_unconditional_sampling_of_conditional_models_reports_labels(models, name):
    out = models[name].sample(50)
    assert out.obs["cluster"].notna().all()
    assert set(out.obs["cluster"].astype(str)) <= set(models[name].label_categories)


def test_cscgan_profiles_depend_on_the_cluster(models):
    model: CscGAN = models["cscgan"]
    cats = model.label_categories
    torch.manual_seed(2)
    a = model._profiles(30, np.repeat(cats[0], 30))
    torch.manual_seed(2)
    b = model._profiles(30, np.repeat(cats[1], 30))
    assert np.abs(a - b).max() > 1e-3, "same noise, different cluster: the generator must react"


def test_vae_proportions_depend_on_the_cluster(models):
    module = models["vae"].module_.eval()
    z = torch.randn(30, module.to_latent.out_features // 2)
    with torch.no_grad():
        a = module.proportions(z, torch.zeros(30, dtype=torch.long))
        b = module.proportions(z, torch.ones(30, dtype=torch.long))
    assert (a - b).abs().max() > 1e-5


def test_activa_keeps_cells_its_classifier_assigns_to_the_request(models):
    model: Activa = models["activa"]
    cats = np.asarray(model.label_categories)
    torch.manual_seed(0)
    _, probs = model._draw(500)
    # clusters the classifier gives at least 5% of drawn cells: reachable within the draw rounds on any machine
    # (a tiny model may assign nearly every cell to one cluster)
    common = cats[np.bincount(probs.argmax(axis=1), minlength=cats.size) >= 25]
    assert common.size >= 1
    wanted = np.repeat(common, 6)
    logged = model._by_assignment(wanted)
    assigned = cats[model.classifier_(torch.as_tensor(logged)).argmax(dim=1).numpy()]
    assert model.fallback_cells_ == 0
    np.testing.assert_array_equal(assigned, wanted)


def test_activa_classifier_learns_the_training_labels(models, small):
    model: Activa = models["activa"]
    x = torch.as_tensor(scale_counts(small.X.toarray()))
    predicted = np.asarray(model.label_categories)[model.classifier_(x).argmax(dim=1).numpy()]
    assert (predicted == small.obs["cluster"].astype(str).to_numpy()).mean() > 0.6


def test_activa_warm_up_reconstructs_cells_apart(small):
    """The warm-up VAE must learn: reconstructions differ from cell to cell about as real cells do.

    Without batch norm and with the output layer starting at zero, the KL term won (posterior collapse):
    every reconstruction and every generated cell was the same average cell (spread ~0.1 of the real one).
    """
    model = Activa(epochs=30, warmup_epochs=30, latent_dim=8, encoder_layers=[64, 32], classifier_layers=[32, 16],
                   classifier_epochs=5, batch_size=32, seed=0, device="cpu").fit(small, labels_key="cluster")
    x = torch.as_tensor(scale_counts(small.X.toarray()))
    model.encoder_.eval()
    model.decoder_.eval()
    with torch.no_grad():
        recon = model.decoder_(model.encoder_(x)[0])
    assert (recon.std(dim=0).mean() / x.std(dim=0).mean()).item() > 0.25


def test_unconditional_models_refuse_labels(models):
    for name in ("scgan", "vae-unconditional"):
        with pytest.raises(ScldbenchError, match="not conditional"):
            models[name].sample(5, labels=models[name].label_categories[0])
    assert "cluster" not in models["scgan"].sample(5).obs


@pytest.mark.parametrize(("name", "cls"), [("scgan", ScGAN), ("cscgan", CscGAN), ("activa", Activa),
                                           ("vae", CountVAE), ("cfgen", CFGen)])
def test_registered_under_their_names(name, cls):
    assert get_generator(name) is cls
    assert cls.name == name
    json.dumps(cls.parameters())


def test_bad_parameters_are_refused():
    with pytest.raises(ScldbenchError, match="count_sampling"):
        ScGAN(count_sampling="exact")
    with pytest.raises(ScldbenchError, match="dispersion"):
        CountVAE(dispersion="cell")
    with pytest.raises(ScldbenchError, match="layer sizes"):
        Activa(encoder_layers=[])


# ---------------------------------------------------------------------- shared building blocks
def test_gan_output_layer_gives_every_cell_the_fixed_total():
    """scGAN's generator ends in ReLU + LSN: every generated profile sums to `total`, non-negative, log or not."""
    from scldbench.baselines.scgan import GanGenerator

    torch.manual_seed(0)
    for log in (True, False):
        gen = GanGenerator(8, [16, 32], 50, 0, 20_000.0, log).eval()
        with torch.no_grad():
            profiles = unscale(gen(torch.randn(7, 8)), log)
        assert profiles.min().item() >= 0.0
        np.testing.assert_allclose(profiles.sum(dim=1).numpy(), 20_000.0, rtol=1e-3)


def test_gan_critic_sees_normalised_counts_as_in_the_paper(models):
    """The paper's critic reads counts normalised to 20,000 (no log); the generator must emit that scale."""
    gen = models["scgan"].generator_.eval()
    with torch.no_grad():
        cells = gen(torch.randn(6, models["scgan"].latent_dim))
    np.testing.assert_allclose(cells.sum(dim=1).numpy(), 20_000.0, rtol=1e-3)


def test_scgan_cells_take_the_training_library_sizes(models, small):
    out = models["scgan"].sample(40, seed=3)
    real = np.log(np.asarray(small.X.sum(axis=1)).ravel())
    generated = np.log(np.maximum(np.asarray(out.X.sum(axis=1)).ravel(), 1.0))
    # Poisson counts around library sizes drawn from the training cells: same range, close medians
    assert real.min() - 0.5 < generated.min() and generated.max() < real.max() + 0.5
    assert abs(np.median(generated) - np.median(real)) < 0.5


def test_scaling_round_trips_to_normalised_counts():
    counts = np.random.default_rng(0).poisson(3.0, size=(6, 30)).astype(np.float32)
    back = unscale(torch.as_tensor(scale_counts(counts, 20_000.0))).numpy()
    np.testing.assert_allclose(back, counts / counts.sum(1, keepdims=True) * 20_000.0, rtol=1e-4, atol=1e-2)


def test_to_counts_hits_the_library_sizes():
    profiles = np.random.default_rng(1).random((4, 50))
    libraries = np.array([100.0, 1000.0, 50.0, 7.0])
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(to_counts(profiles, libraries, "none", rng).sum(1), libraries, rtol=1e-5)
    rounded = to_counts(profiles, libraries, "round", rng)
    assert np.array_equal(rounded, np.round(rounded))
    assert np.abs(rounded.sum(1) - libraries).max() <= 25


def test_library_prior_draws_from_the_requested_label():
    counts = np.vstack([np.full((5, 3), 10.0), np.full((5, 3), 1000.0)])
    labels = np.array(["a"] * 5 + ["b"] * 5)
    prior = LibraryPrior(counts, labels)
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(prior.draw(np.array(["a", "b", "a"]), 3, rng), [30.0, 3000.0, 30.0])
    assert set(np.round(prior.draw(None, 50, rng))) == {30.0, 3000.0}
    mu, sd = prior.lognormal("b")
    assert mu == pytest.approx(np.log(3000.0)) and sd == pytest.approx(0.0)
