"""SCLD's fit, one function per stage: each takes its config section and returns a small fitted object.

The order is the paper's figure with the count model and calibrations added: autoencoder -> count model ->
latent diffusion -> latent calibration -> scorer (post-guidance) -> marginal map. Stages that need the model's
own draws receive them as functions (`draw_latents`, `decode`, `draw_cells`) from the generator, so that every
stage samples exactly as `sample` does at that point of the fit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from scldbench.scld.autoencoder import Autoencoder, log_normalise, log_profiles, normalise
from scldbench.scld.calibration import cluster_mean_offsets, cluster_means, fit_spread, within_cluster_variance
from scldbench.scld.config import (
    AutoencoderConfig,
    CountModelConfig,
    DiffusionConfig,
    LatentCalibrationConfig,
    MarginalConfig,
    ScorerConfig,
)
from scldbench.scld.denoiser import Denoiser
from scldbench.scld.dispersion import POISSON_THETA, nb_theta_mle, residual_moments, shrink_log_theta, theta_from_sums
from scldbench.scld.latent_scaling import LatentScaler, fit_latent_scaler
from scldbench.scld.marginals import MarginalSketch, sketch_cells, stack_sketches
from scldbench.scld.schedule import Schedule, schedule_from_config
from scldbench.scld.scorer import Scorer, train_scorer
from scldbench.scld.training import CountData, autocast, train_autoencoder, train_denoiser

log = logging.getLogger("scldbench.scld")

# cap on generated cells the latent calibration and the scorer learn from (the scorer sees as many real cells)
_DRAW_MAX_CELLS = 8192
# the fitted latent spread's range and precision (1.5 / 2**10)
_SPREAD_RANGE = (0.5, 2.0)
_SPREAD_BISECTIONS = 10
# training cells per cluster whose gene distributions the marginal calibration maps onto
_MARGINAL_MAX_CELLS = 2048
# cells whose counts and decoded means the maximum-likelihood dispersion holds in memory at once
_DISPERSION_MAX_CELLS = 2048


@dataclass
class TrainingCells:
    """The training cells as every stage reads them."""

    data: CountData
    cluster_of: np.ndarray  # cluster index per cell (numpy)
    cluster: torch.Tensor  # the same on the device
    n_clusters: int
    library: np.ndarray  # counts per cell

    @property
    def device(self) -> torch.device:
        return self.data.device


@dataclass
class CountModel:
    """How decoded profiles become counts: NB log theta per cluster and gene, training library sizes per cluster."""

    log_theta: torch.Tensor
    libraries: list[np.ndarray]


@dataclass
class LatentDiffusion:
    """The denoiser and what places its latents: scaling, noise schedule, cluster centres and the latents' bound."""

    denoiser: Denoiser
    scaler: LatentScaler
    schedule: Schedule
    centre: torch.Tensor  # (clusters x dim) training latents' mean per cluster, in the diffusion's space
    bound: float  # largest absolute training latent, in the diffusion's space


@dataclass
class LatentCalibration:
    """Per-cluster offsets (None: none) and the spread factor applied to latents sampled at the fitted guidance."""

    offset: torch.Tensor | None
    spread: float


@dataclass
class MarginalMap:
    """Per-cluster gene sketches of a fresh draw (source) and of the training cells (target)."""

    source: MarginalSketch
    target: MarginalSketch


class Decode(Protocol):
    """Counts from latents of the given clusters under a latent calibration."""

    def __call__(self, z: torch.Tensor, cluster_idx: np.ndarray, calibration: LatentCalibration) -> torch.Tensor: ...


class FitFigures:
    """Gathers every stage's figures into `diagnostics` (calling it on a stage's result returns the fitted object)
    and times the fit."""

    def __init__(self, diagnostics: dict[str, Any]) -> None:
        self.diagnostics = diagnostics
        self.start = time.perf_counter()

    def __call__(self, result: tuple[Any, ...]) -> Any:
        *fitted, figures = result
        self.diagnostics |= figures
        return fitted[0] if len(fitted) == 1 else tuple(fitted)

    @contextlib.contextmanager
    def timed(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.diagnostics[key] = time.perf_counter() - start

    def done(self) -> None:
        self.diagnostics["fit_seconds"] = time.perf_counter() - self.start


# ----------------------------------------------------------------- 1. autoencoder
def fit_autoencoder(
    cells: TrainingCells, cfg: AutoencoderConfig, amp: bool, rng: np.random.Generator
) -> tuple[Autoencoder, dict[str, Any]]:
    """The autoencoder on every training cell; with `ae_anchor="cluster"` its decoder starts at cluster profiles."""
    data = cells.data
    every = np.arange(data.n_obs)
    anchors = log_profiles(cluster_sums(cells, every)) if cfg.ae_anchor == "cluster" else None
    ae = Autoencoder(
        data.n_vars, cfg.ae_hidden, cfg.latent_dim, cfg.ae_loss, cfg.ae_activation, cfg.ae_latent_activation, anchors
    ).to(cells.device)
    figures = train_autoencoder(
        ae, data, cfg.ae_epochs, cfg.ae_lr, cfg.ae_batch_size, cfg.ae_weight_decay, rng, amp, log.info,
        cluster=cells.cluster,
    )
    return ae, figures


@torch.no_grad()
def cluster_sums(cells: TrainingCells, idx: np.ndarray) -> torch.Tensor:
    """Summed counts per cluster (rows) over the cells `idx`."""
    data = cells.data
    sums = torch.zeros(cells.n_clusters, data.n_vars, device=data.device, dtype=torch.float64)
    for start in range(0, idx.size, 1024):
        part = idx[start : start + 1024]
        sums.index_add_(0, cells.cluster[torch.as_tensor(part, device=data.device)], data(part).double())
    return sums


def decoded_mean(ae: Autoencoder, counts: torch.Tensor, cluster: torch.Tensor, amp: bool) -> torch.Tensor:
    """Each cell encoded and decoded in its cluster: its expected counts at its own library size."""
    with autocast(counts.device, amp):
        profile = ae.profile(ae.encode(counts), cluster)
    return profile.float() * counts.sum(1, keepdim=True)


# ----------------------------------------------------------------- 2. count model
@torch.no_grad()
def fit_count_model(
    cells: TrainingCells, ae: Autoencoder, cfg: CountModelConfig, amp: bool, rng: np.random.Generator
) -> tuple[CountModel, dict[str, Any]]:
    """NB dispersion around the decoded means of the training cells, and their library sizes per cluster.

    `dispersion="mle"` maximises the NB likelihood, `"moments"` matches the variance beyond Poisson. With
    `dispersion_by="cluster"` each cluster's estimate leans on the all-cluster one as if that came from
    `dispersion_prior_cells` more cells; with `"gene"` every cluster shares the all-cluster estimate.
    """
    start, n_k, figures = time.perf_counter(), cells.n_clusters, {}
    libraries = [cells.library[cells.cluster_of == k].astype(np.float64) for k in range(n_k)]
    if cfg.dispersion == "learned":
        log_theta = ae.log_theta.detach().clone().expand(n_k, -1).contiguous()
    else:
        fit = _dispersion_mle if cfg.dispersion == "mle" else _dispersion_moments
        own, pooled, n_cells = fit(cells, ae, cfg.dispersion_floor, amp, rng)
        overdispersed = pooled < math.log(POISSON_THETA) - 1e-3
        figures["dispersion_poisson_genes"] = float(1 - overdispersed.float().mean())
        if bool(overdispersed.any()):
            figures["dispersion_theta_median"] = float(pooled[overdispersed].exp().median())
        if cfg.dispersion_by == "gene":
            log_theta = pooled.expand(n_k, -1).contiguous()
        else:
            log_theta = shrink_log_theta(own, pooled, n_cells, cfg.dispersion_prior_cells)
    figures["dispersion_seconds"] = time.perf_counter() - start
    return CountModel(log_theta, libraries), figures


def _dispersion_moments(
    cells: TrainingCells, ae: Autoencoder, floor: float, amp: bool, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    data, n_k = cells.data, cells.n_clusters
    mean_sq = torch.zeros(n_k, data.n_vars, device=data.device)
    excess = torch.zeros(n_k, data.n_vars, device=data.device)
    for start in range(0, data.n_obs, 1024):
        idx = np.arange(start, min(start + 1024, data.n_obs))
        x, k = data(idx), cells.cluster[torch.as_tensor(idx, device=data.device)]
        mu = decoded_mean(ae, x, k, amp)
        for j in torch.unique(k).tolist():
            a, b = residual_moments(x[k == j], mu[k == j])
            mean_sq[j] += a
            excess[j] += b
    own = theta_from_sums(mean_sq, excess, floor)
    pooled = theta_from_sums(mean_sq.sum(0), excess.sum(0), floor)
    return own, pooled, torch.bincount(cells.cluster, minlength=n_k)


def _dispersion_mle(
    cells: TrainingCells, ae: Autoencoder, floor: float, amp: bool, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    data, n_k = cells.data, cells.n_clusters
    idx = np.arange(data.n_obs)
    if idx.size > _DISPERSION_MAX_CELLS:
        idx = np.sort(rng.choice(idx, size=_DISPERSION_MAX_CELLS, replace=False))
    counts, means = [], []
    for start in range(0, idx.size, 1024):
        part = idx[start : start + 1024]
        x = data(part)
        counts.append(x)
        means.append(decoded_mean(ae, x, cells.cluster[torch.as_tensor(part, device=data.device)], amp))
    x, mu = torch.cat(counts), torch.cat(means)
    k = cells.cluster[torch.as_tensor(idx, device=data.device)]
    own = nb_theta_mle(x, mu, k, n_k, floor)
    pooled = nb_theta_mle(x, mu, torch.zeros_like(k), 1, floor)[0]
    return own, pooled, torch.bincount(k, minlength=n_k)


# ----------------------------------------------------------------- 3. latent diffusion
@torch.no_grad()
def encode_cells(cells: TrainingCells, ae: Autoencoder, latent_library: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent of every training cell (plus log library when it diffuses too) and the condition profiles: the mean
    log expression of each cluster, then of all cells."""
    data, n_k, device = cells.data, cells.n_clusters, cells.device
    profiles = torch.zeros(n_k + 1, data.n_vars, device=device)
    counts = torch.zeros(n_k + 1, device=device)
    chunks = []
    for start in range(0, data.n_obs, 1024):
        idx = np.arange(start, min(start + 1024, data.n_obs))
        x = data(idx)
        chunks.append(ae.encode(x).float())
        profiles.index_add_(0, cells.cluster[idx], log_normalise(x))
        counts.index_add_(0, cells.cluster[idx], torch.ones(len(idx), device=device))
    profiles[n_k] = profiles[:n_k].sum(0)
    counts[n_k] = counts[:n_k].sum()
    profiles = profiles / counts.clamp(min=1)[:, None]
    latents = torch.cat(chunks)
    if latent_library:
        log_lib = torch.as_tensor(np.log(np.maximum(cells.library, 1.0)), device=device, dtype=torch.float32)
        latents = torch.cat([latents, log_lib[:, None]], dim=1)
    return latents, profiles


def fit_diffusion(
    cells: TrainingCells, latents: torch.Tensor, profiles: torch.Tensor, cfg: DiffusionConfig, amp: bool,
    rng: np.random.Generator,
) -> tuple[LatentDiffusion, torch.Tensor, dict[str, Any]]:
    """The conditional DDPM on the training latents, mapped by `latent_scaling` first.

    Returns the fitted diffusion, the training latents in its space (the calibration compares draws with them)
    and the training figures.
    """
    scaler = fit_latent_scaler(latents, cfg.latent_scaling)
    latents = scaler.to_diffusion(latents)
    centre = cluster_means(latents, cells.cluster, cells.n_clusters)
    bound = float(latents.abs().max())
    schedule = schedule_from_config(cfg.schedule, cfg.timesteps, cfg.beta_start, cfg.beta_end)
    model = Denoiser(
        latents.shape[1], profiles, cfg.denoiser_channels, cfg.cond_dim, cfg.time_dim, cfg.dropout, cfg.fusion
    ).to(cells.device)
    steps = cfg.training_steps(latents.shape[0])
    denoiser, figures = train_denoiser(
        model, latents, cells.cluster, cells.n_clusters, schedule, steps, cfg.lr, cfg.batch_size, cfg.cond_drop,
        amp, rng, log.info,
    )
    return LatentDiffusion(denoiser, scaler, schedule, centre, bound), latents, figures | {"diffusion_steps": steps}


# ----------------------------------------------------------------- the fit-time draw
def plan_draw(cells: TrainingCells, rng: np.random.Generator) -> np.ndarray:
    """Cluster indices of the draw the latent calibration and the scorer learn from: the training cells' own, up
    to `_DRAW_MAX_CELLS` of them."""
    plan = cells.cluster_of
    if plan.size > _DRAW_MAX_CELLS:
        plan = rng.choice(cells.cluster_of, size=_DRAW_MAX_CELLS, replace=False)
    return plan


# ----------------------------------------------------------------- 4. latent calibration
@torch.no_grad()
def fit_latent_calibration(
    cells: TrainingCells, latents: torch.Tensor, drawn: torch.Tensor, plan: np.ndarray,
    cfg: LatentCalibrationConfig, decode: Decode, batch: int, rng: np.random.Generator,
) -> tuple[LatentCalibration, dict[str, Any]]:
    """Mean offsets of the draw `drawn` (latents for the clusters `plan`) from the training latents, and the spread
    at which its decoded cells' within-cluster variance matches the training cells'."""
    figures: dict[str, Any] = {}
    fixed = LatentCalibration(None, fixed_spread(cfg))
    if cfg.latent_calibration == "none":
        return fixed, figures
    plan_t = torch.as_tensor(plan, device=cells.device, dtype=torch.long)
    offset = cluster_mean_offsets(
        latents, cells.cluster, drawn, plan_t, cells.n_clusters, cfg.calibration_prior_cells
    )
    figures["latent_offset_norm"] = float(offset.norm(dim=1).mean())
    if cfg.latent_calibration == "mean":
        return LatentCalibration(offset, fixed.spread), figures
    spread = _fit_spread(cells, drawn, plan, offset, decode, batch, rng)
    return LatentCalibration(offset, spread), figures | {"latent_spread": spread}


def fixed_spread(cfg: LatentCalibrationConfig) -> float:
    """The spread factor before (or without) a fitted one: `latent_spread`, or 1 while `"spread"` fits it."""
    return cfg.latent_spread if cfg.latent_calibration != "spread" else 1.0


def _fit_spread(
    cells: TrainingCells, drawn: torch.Tensor, plan: np.ndarray, offset: torch.Tensor, decode: Decode, batch: int,
    rng: np.random.Generator,
) -> float:
    """The latent spread at which the draw's within-cluster expression variance matches the training cells'.

    Every trial factor decodes the same latents with torch's generator seeded alike, so each count is drawn from
    the same uniform (`count_noise`) and the variance grows with the factor.
    """
    data, n_k = cells.data, cells.n_clusters
    chunks = [np.arange(i, min(i + batch, data.n_obs)) for i in range(0, data.n_obs, batch)]
    target = within_cluster_variance(((data(idx), cells.cluster[idx]) for idx in chunks), n_k)
    plan_cpu = torch.as_tensor(plan, dtype=torch.long)
    noise_seed = int(rng.integers(2**31))
    forked = [cells.device] if cells.device.type == "cuda" else []

    def variance_at(factor: float) -> float:
        trial = LatentCalibration(offset, factor)
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(noise_seed)
            decoded = (
                (decode(drawn[i : i + batch], plan[i : i + batch], trial), plan_cpu[i : i + batch])
                for i in range(0, plan.size, batch)
            )
            return within_cluster_variance(decoded, n_k)

    return fit_spread(variance_at, target, _SPREAD_RANGE[0], _SPREAD_RANGE[1], _SPREAD_BISECTIONS)


# ----------------------------------------------------------------- 5. scorer (post-guidance)
def fit_scorer(
    cells: TrainingCells, generated: torch.Tensor, cfg: ScorerConfig, batch_size: int, rng: np.random.Generator
) -> tuple[Scorer, dict[str, Any]]:
    """The real/generated scorer, trained on the training cells against `generated` (the model's own draw)."""
    start = time.perf_counter()
    scorer = Scorer(cells.data.n_vars, cfg.scorer_hidden).to(cells.device)
    figures = train_scorer(
        scorer, cells.data, cells.data.n_obs, generated.to(cells.device), cfg.scorer_epochs, cfg.scorer_lr,
        batch_size, rng,
    )
    return scorer, figures | {"scorer_seconds": time.perf_counter() - start}


# ----------------------------------------------------------------- 6. marginal map
@torch.no_grad()
def fit_marginal_map(
    cells: TrainingCells, cfg: MarginalConfig, draw_cells: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator,
) -> tuple[MarginalMap, dict[str, Any]]:
    """Per-cluster sketches of gene distributions: a fresh draw as `sample` returns it (`draw_cells`, given
    cluster indices), and the training cells (up to `_MARGINAL_MAX_CELLS` per cluster)."""
    start, n_k = time.perf_counter(), cells.n_clusters
    members = []
    for k in range(n_k):
        idx = np.flatnonzero(cells.cluster_of == k)
        if idx.size > _MARGINAL_MAX_CELLS:
            idx = np.sort(rng.choice(idx, size=_MARGINAL_MAX_CELLS, replace=False))
        members.append(idx)
    target = stack_sketches([sketch_cells(normalise(cells.data(idx)), cfg.marginal_levels) for idx in members])
    plan = np.repeat(np.arange(n_k), cfg.draw_sizes(np.bincount(cells.cluster_of, minlength=n_k)))
    drawn = draw_cells(plan)
    source = stack_sketches(
        [sketch_cells(normalise(torch.as_tensor(drawn[plan == k], device=cells.device)), cfg.marginal_levels)
         for k in range(n_k)]
    )
    return MarginalMap(source, target), {"marginal_seconds": time.perf_counter() - start}

