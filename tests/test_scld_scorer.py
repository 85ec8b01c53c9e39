"""Post-guidance: the scorer keeps the best fraction, runs beside generation, and the count returned is exact."""

from __future__ import annotations

import threading

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from scldbench.errors import ScldbenchError
from scldbench.scld.generator import SCLD
from scldbench.scld.scorer import Scorer, score_beside, top_indices, train_scorer

TINY = {
    "latent_dim": 4,
    "ae_hidden": 16,
    "ae_epochs": 2,
    "cond_dim": 8,
    "denoiser_channels": [16],
    "time_dim": 8,
    "timesteps": 20,
    "steps": 20,
    "sampler": "ddim",
    "ddim_steps": 5,
    "scorer_hidden": 16,
    "scorer_epochs": 2,
    "sample_batch_size": 16,
    "device": "cpu",
}


def toy_counts(n: int = 60, genes: int = 12, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b", "c"])[np.arange(n) % 3]
    rates = rng.gamma(2.0, 2.0, size=(3, genes))
    x = rng.poisson(rates[np.arange(n) % 3]).astype(np.float32)
    obs = pd.DataFrame({"kind": pd.Categorical(labels)}, index=[f"c{i}" for i in range(n)])
    return ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(genes)]))


def test_top_indices_keeps_the_highest_scores_in_order():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.2])
    assert top_indices(scores, 3).tolist() == [1, 2, 3]
    assert top_indices(scores, 0).size == 0
    assert top_indices(scores, 5).tolist() == [0, 1, 2, 3, 4]


def test_score_beside_scores_every_batch_in_a_worker_thread_with_a_bounded_queue():
    seen_threads: set[str] = set()
    produced = []

    def generate():
        for i in range(7):
            produced.append(i)
            yield torch.full((3,), float(i))

    def score(batch: torch.Tensor) -> torch.Tensor:
        seen_threads.add(threading.current_thread().name)
        return batch * 2

    batches, scores = score_beside(generate(), score, maxsize=2)
    assert produced == list(range(7)) and len(batches) == 7
    assert torch.equal(torch.cat(scores), torch.cat(batches) * 2)
    assert seen_threads == {"scld-scorer"}


def test_score_beside_reraises_scorer_errors():
    def bad(batch: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("scorer broke")

    with pytest.raises(RuntimeError, match="scorer broke"):
        score_beside((torch.zeros(2) for _ in range(3)), bad, maxsize=1)


def test_scorer_has_three_linear_layers_and_two_outputs():
    scorer = Scorer(12, 16)
    linears = [m for m in scorer.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and linears[-1].out_features == 2
    counts = torch.rand(4, 12) * 5
    log_odds = scorer.realness(counts)
    probability = torch.softmax(scorer(counts), dim=1)[:, 1]
    assert log_odds.shape == (4,)
    assert torch.allclose(torch.sigmoid(log_odds), probability, atol=1e-6)


@pytest.mark.parametrize("keep", [0.8, 0.5])
def test_sample_draws_extra_cells_and_returns_exactly_the_request(keep: float, monkeypatch: pytest.MonkeyPatch):
    model = SCLD(**TINY, keep_fraction=keep, seed=0).fit(toy_counts(), labels_key="kind")
    drawn: list[int] = []
    original = model._generate_batch

    def counting(cluster_idx: np.ndarray, w: float, fit_time: bool = False) -> torch.Tensor:
        drawn.append(len(cluster_idx))
        return original(cluster_idx, w, fit_time)

    monkeypatch.setattr(model, "_generate_batch", counting)
    request = {"a": 7, "b": 10, "c": 1}
    out = model.sample(18, labels=request)
    assert out.n_obs == 18
    assert out.obs["kind"].value_counts().to_dict() == request  # every label asked for
    assert sum(drawn) == sum(int(np.ceil(n / keep)) for n in request.values())
    drawn.clear()
    out = model.sample(33)  # unconditional: proportional labels, assigned labels come back
    assert out.n_obs == 33 and out.obs["kind"].notna().all()


def test_kept_cells_are_the_best_scored():
    # the quantile mapping after the scorer would change the returned cells
    model = SCLD(**TINY, keep_fraction=0.5, marginal_calibration="none", seed=0).fit(toy_counts(), labels_key="kind")
    out = model.sample(20, labels="a", seed=5)
    scores = model.scorer_.realness(torch.as_tensor(out.X)).numpy()
    scorer, model.scorer_ = model.scorer_, None
    everything = model.sample(40, labels="a", seed=5)
    all_scores = scorer.realness(torch.as_tensor(everything.X)).numpy()
    # the kept 20 are exactly the top half of the same 40 draws
    assert np.allclose(np.sort(scores), np.sort(all_scores)[-20:], atol=1e-6)


def _fit_scorer(shift: float, validation: float, epochs: int = 12) -> tuple[Scorer, dict[str, float]]:
    """Scorer on 200 real Poisson cells against 200 generated ones whose first 10 of 300 genes are `shift` x higher."""
    rng = np.random.default_rng(0)
    rates = np.full(300, 5.0)
    real = torch.as_tensor(rng.poisson(rates, size=(200, 300)), dtype=torch.float32)
    rates[:10] *= shift
    generated = torch.as_tensor(rng.poisson(rates, size=(200, 300)), dtype=torch.float32)
    torch.manual_seed(0)
    scorer = Scorer(300, 128)
    figures = train_scorer(scorer, lambda idx: real[idx], 200, generated, epochs, 3e-3, 32, rng, validation=validation)
    return scorer, figures


def test_scorer_stops_at_its_best_held_out_epoch_when_there_is_nothing_to_learn():
    # real and generated cells from one distribution: any fit beyond chance is memorising the training cells
    _, overfit = _fit_scorer(shift=1.0, validation=0.0, epochs=30)
    assert set(overfit) == {"scorer_train_accuracy"} and overfit["scorer_train_accuracy"] > 0.7
    _, figures = _fit_scorer(shift=1.0, validation=0.2, epochs=30)
    assert figures["scorer_epochs_kept"] < 30
    assert abs(figures["scorer_validation_auc"] - 0.5) < 0.1
    assert figures["scorer_train_accuracy"] < overfit["scorer_train_accuracy"]


def test_scorer_tells_shifted_cells_apart_on_held_out_cells():
    scorer, figures = _fit_scorer(shift=3.0, validation=0.2)
    assert figures["scorer_validation_auc"] > 0.9
    rng = np.random.default_rng(1)
    rates = np.full(300, 5.0)
    fresh_real = torch.as_tensor(rng.poisson(rates, size=(100, 300)), dtype=torch.float32)
    rates[:10] *= 3.0
    fresh_generated = torch.as_tensor(rng.poisson(rates, size=(100, 300)), dtype=torch.float32)
    assert (scorer.realness(fresh_real) > scorer.realness(fresh_generated).median()).float().mean() > 0.9


def test_scorer_projection_is_the_real_cells_principal_axes():
    rng = np.random.default_rng(0)
    real = torch.as_tensor(rng.poisson(rng.gamma(2.0, 2.0, size=(1, 30)), size=(80, 30)), dtype=torch.float32)
    torch.manual_seed(0)
    scorer = Scorer(30, 16, n_components=5)
    scorer.fit_projection(real)
    v = scorer.components
    assert torch.allclose(v.T @ v, torch.eye(5), atol=1e-4)
    logged = torch.log1p(real / real.sum(1, keepdim=True) * 1e4)
    assert torch.allclose(scorer.center, logged.mean(0), atol=1e-5)
    # the axes span the leading principal subspace: they keep as much variance as the exact top 5
    centred = logged - logged.mean(0)
    exact = torch.linalg.svdvals(centred)[:5].square().sum()
    assert float((centred @ v).square().sum() / exact) > 0.99
    assert scorer.net[0].in_features == 5 and scorer(real).shape == (80, 2)


@pytest.mark.parametrize(("key", "value"), [("keep_fraction", 0.0), ("keep_fraction", 1.5)])
def test_bad_scorer_settings_are_refused_by_name(key: str, value: float):
    with pytest.raises(ScldbenchError, match=key):
        SCLD(**TINY, **{key: value})
