"""SCLD: single-cell latent diffusion with pre-guidance (cluster conditioning) and post-guidance (a scorer)."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import anndata as ad
import numpy as np
import torch

from scldbench.data.counts import to_dense
from scldbench.errors import ScldbenchError
from scldbench.generator import Generator, SampleOutput
from scldbench.scld.autoencoder import Autoencoder, draw_counts, log_normalise, log_profiles, normalise
from scldbench.scld.calibration import (
    cluster_mean_offsets,
    cluster_means,
    fit_spread,
    spread_about,
    within_cluster_variance,
)
from scldbench.scld.config import SCLDConfig
from scldbench.scld.denoiser import Denoiser
from scldbench.scld.dispersion import POISSON_THETA, nb_theta_mle, residual_moments, shrink_log_theta, theta_from_sums
from scldbench.scld.latent_scaling import fit_latent_scaler
from scldbench.scld.marginals import MarginalSketch, map_counts, sketch_cells, stack_sketches
from scldbench.scld.sampling import ddim_sample, ddpm_sample, guided_model
from scldbench.scld.schedule import schedule_from_config
from scldbench.scld.scorer import Scorer, score_beside, top_indices, train_scorer
from scldbench.scld.training import CountData, autocast, train_autoencoder, train_denoiser, validation_split

log = logging.getLogger("scldbench.scld")
_D = SCLDConfig()
# cap on generated cells the scorer learns from (it sees as many real cells)
_SCORER_MAX_CELLS = 8192
# the fitted latent spread's range and precision (1.5 / 2**10)
_SPREAD_RANGE = (0.5, 2.0)
_SPREAD_BISECTIONS = 10
# real cells the scorer's principal axes are found in
_PROJECTION_MAX_CELLS = 4096
# training cells per cluster whose gene distributions the marginal calibration maps onto
_MARGINAL_MAX_CELLS = 2048
# cells whose counts and decoded means the maximum-likelihood dispersion holds in memory at once
_DISPERSION_MAX_CELLS = 2048
# fewer validation (or fitting) cells than this and the autoencoder fits on every cell
_MIN_VALIDATION_CELLS = 32


class SCLD(Generator):
    """Autoencoder -> conditional latent DDPM -> decoder and count sampling -> scorer keeps the best cells."""

    name = "scld"
    description = "single-cell latent diffusion with pre-guidance (cluster means) and post-guidance (scorer)"
    conditional = True
    supports_guidance = True

    def __init__(
        self,
        *,
        latent_dim: int = _D.latent_dim,
        ae_hidden: int = _D.ae_hidden,
        ae_activation: str = _D.ae_activation,
        ae_latent_activation: str = _D.ae_latent_activation,
        ae_loss: str = _D.ae_loss,
        ae_epochs: int = _D.ae_epochs,
        ae_lr: float = _D.ae_lr,
        ae_batch_size: int = _D.ae_batch_size,
        ae_weight_decay: float = _D.ae_weight_decay,
        ae_validation: float = _D.ae_validation,
        ae_anchor: str = _D.ae_anchor,
        count_sampling: str = _D.count_sampling,
        dispersion: str = _D.dispersion,
        dispersion_floor: float = _D.dispersion_floor,
        dispersion_by: str = _D.dispersion_by,
        dispersion_prior_cells: float = _D.dispersion_prior_cells,
        library: str = _D.library,
        latent_scaling: str = _D.latent_scaling,
        cond_dim: int = _D.cond_dim,
        fusion: str = _D.fusion,
        cond_drop: float = _D.cond_drop,
        timesteps: int = _D.timesteps,
        beta_start: float = _D.beta_start,
        beta_end: float = _D.beta_end,
        schedule: str = _D.schedule,
        clip_latents: str = _D.clip_latents,
        denoiser_channels: list[int] | None = None,
        time_dim: int = _D.time_dim,
        dropout: float = _D.dropout,
        batch_size: int = _D.batch_size,
        steps: int = _D.steps,
        lr: float = _D.lr,
        lr_schedule: str = _D.lr_schedule,
        ema_decay: float = _D.ema_decay,
        sampler: str = _D.sampler,
        ddim_steps: int = _D.ddim_steps,
        ddim_eta: float = _D.ddim_eta,
        guidance: float = _D.guidance,
        latent_calibration: str = _D.latent_calibration,
        calibration_prior_cells: float = _D.calibration_prior_cells,
        latent_spread: float = _D.latent_spread,
        sample_batch_size: int = _D.sample_batch_size,
        marginal_calibration: str = _D.marginal_calibration,
        marginal_levels: int = _D.marginal_levels,
        marginal_draw: int = _D.marginal_draw,
        scorer: bool = _D.scorer,
        keep_fraction: float = _D.keep_fraction,
        scorer_hidden: int = _D.scorer_hidden,
        scorer_epochs: int = _D.scorer_epochs,
        scorer_validation: float = _D.scorer_validation,
        scorer_components: int = _D.scorer_components,
        scorer_lr: float = _D.scorer_lr,
        queue_size: int = _D.queue_size,
        mixed_precision: bool = _D.mixed_precision,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(seed=seed, device=device)
        params = {k: v for k, v in locals().items() if k not in ("self", "seed", "device", "__class__")}
        if params["denoiser_channels"] is None:
            params["denoiser_channels"] = list(_D.denoiser_channels)
        self.config = SCLDConfig.from_params(params)
        for key, value in self.config.as_dict().items():
            setattr(self, key, value)
        self.diagnostics: dict[str, Any] = {}

    # ----------------------------------------------------------------- fit
    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        cfg, device = self.config, self.device
        amp = cfg.mixed_precision
        self.diagnostics = {"device": str(device), "n_train": int(adata.n_obs), "n_genes": int(adata.n_vars)}
        data = CountData(adata.X, device)
        self._clusters = list(self.label_categories) if labels is not None else ["all"]
        cluster_of = (
            np.searchsorted(np.asarray(self._clusters), labels) if labels is not None else np.zeros(adata.n_obs, int)
        )
        library = data.library()
        self._libraries = [library[cluster_of == k].astype(np.float64) for k in range(len(self._clusters))]

        t0 = time.perf_counter()
        cluster_t = torch.as_tensor(cluster_of, device=device, dtype=torch.long)
        fit_idx, val_idx = validation_split(cluster_of, cfg.ae_validation, self._rng, _MIN_VALIDATION_CELLS)
        anchors = None
        if cfg.ae_anchor == "cluster":
            anchors = log_profiles(self._cluster_sums(data, fit_idx, cluster_t))
        self._ae = Autoencoder(
            adata.n_vars,
            cfg.ae_hidden,
            cfg.latent_dim,
            cfg.ae_loss,
            cfg.ae_activation,
            cfg.ae_latent_activation,
            anchors,
        ).to(device)
        self.diagnostics |= train_autoencoder(
            self._ae,
            data,
            cfg.ae_epochs,
            cfg.ae_lr,
            cfg.ae_batch_size,
            cfg.ae_weight_decay,
            self._rng,
            amp,
            log.info,
            train_idx=fit_idx,
            val_idx=val_idx,
            cluster=cluster_t,
        )
        self.diagnostics["ae_validation_cells"] = int(val_idx.size)

        t_disp = time.perf_counter()
        self._log_theta = self._fit_dispersion(data, cluster_t)
        self.diagnostics["dispersion_seconds"] = time.perf_counter() - t_disp
        latents, profiles = self._encode_all(data, library, cluster_of)
        self._scaler = fit_latent_scaler(latents, cfg.latent_scaling)
        latents = self._scaler.to_diffusion(latents)
        self._latent_centre = cluster_means(latents, cluster_t, len(self._clusters))
        self._latent_bound = float(latents.abs().max())
        self._schedule = schedule_from_config(cfg.schedule, cfg.timesteps, cfg.beta_start, cfg.beta_end)
        model = Denoiser(
            latents.shape[1], profiles, cfg.denoiser_channels, cfg.cond_dim, cfg.time_dim, cfg.dropout, cfg.fusion
        ).to(device)
        self._denoiser, figures = train_denoiser(
            model,
            latents,
            cluster_t,
            len(self._clusters),
            self._schedule,
            cfg.steps,
            cfg.lr,
            cfg.batch_size,
            cfg.cond_drop,
            cfg.ema_decay,
            amp,
            self._rng,
            log.info,
            lr_schedule=cfg.lr_schedule,
        )
        self.diagnostics |= figures

        # cells the model draws after training, for the training cells' own clusters: the latent calibration
        # compares them with the training latents, the scorer learns to tell them from real cells
        self._latent_offset: torch.Tensor | None = None
        self._latent_spread = 1.0
        self._scorer: Scorer | None = None
        if cfg.latent_calibration != "none" or cfg.scorer:
            t1 = time.perf_counter()
            plan = cluster_of
            if plan.size > _SCORER_MAX_CELLS:
                plan = self._rng.choice(cluster_of, size=_SCORER_MAX_CELLS, replace=False)
            drawn = self._sample_latents(plan, cfg.guidance)
            if cfg.latent_calibration in ("mean", "spread"):
                plan_t = torch.as_tensor(plan, device=device, dtype=torch.long)
                self._latent_offset = cluster_mean_offsets(
                    latents, cluster_t, drawn, plan_t, len(self._clusters), cfg.calibration_prior_cells
                )
                self.diagnostics["latent_offset_norm"] = float(self._latent_offset.norm(dim=1).mean())
            if cfg.latent_calibration == "spread":
                self._latent_spread = self._fit_spread(data, cluster_t, drawn, plan)
                self.diagnostics["latent_spread"] = self._latent_spread
            self.diagnostics["calibration_seconds"] = time.perf_counter() - t1
            if cfg.scorer:
                t2 = time.perf_counter()
                step, w = cfg.sample_batch_size, cfg.guidance
                generated = torch.cat(
                    [self._decode(drawn[i : i + step], plan[i : i + step], w) for i in range(0, plan.size, step)]
                )
                self._scorer = Scorer(adata.n_vars, cfg.scorer_hidden, cfg.scorer_components).to(device)
                if cfg.scorer_components > 0:
                    fit_cells = np.arange(adata.n_obs)
                    if fit_cells.size > _PROJECTION_MAX_CELLS:
                        fit_cells = np.sort(self._rng.choice(fit_cells, size=_PROJECTION_MAX_CELLS, replace=False))
                    self._scorer.fit_projection(data(fit_cells))
                self.diagnostics |= train_scorer(
                    self._scorer,
                    data,
                    adata.n_obs,
                    generated.to(device),
                    cfg.scorer_epochs,
                    cfg.scorer_lr,
                    cfg.batch_size,
                    self._rng,
                    validation=cfg.scorer_validation,
                )
                self.diagnostics["scorer_seconds"] = time.perf_counter() - t2
        self._marginals: tuple[MarginalSketch, MarginalSketch] | None = None
        if cfg.marginal_calibration == "quantile":
            t3 = time.perf_counter()
            self._marginals = self._fit_marginals(data, cluster_of)
            self.diagnostics["marginal_seconds"] = time.perf_counter() - t3
        self.diagnostics["fit_seconds"] = time.perf_counter() - t0

    @torch.no_grad()
    def _fit_marginals(self, data: CountData, cluster_of: np.ndarray) -> tuple[MarginalSketch, MarginalSketch]:
        """Per-cluster sketches of gene distributions: a fresh draw as `sample` returns it, and the training cells."""
        levels, clusters = self.config.marginal_levels, np.asarray(self._clusters)
        per_cluster = self.config.marginal_draw
        members = []
        for k in range(len(clusters)):
            idx = np.flatnonzero(cluster_of == k)
            if idx.size > _MARGINAL_MAX_CELLS:
                idx = np.sort(self._rng.choice(idx, size=_MARGINAL_MAX_CELLS, replace=False))
            members.append(idx)
        target = stack_sketches([sketch_cells(normalise(data(idx)), levels) for idx in members])
        plan = np.repeat(np.arange(len(clusters)), per_cluster)
        drawn = self._sample(plan.size, clusters[plan], None)
        source = stack_sketches(
            [sketch_cells(normalise(torch.as_tensor(drawn[plan == k], device=self.device)), levels)
             for k in range(len(clusters))]
        )
        return source, target

    @torch.no_grad()
    def _fit_spread(self, data: CountData, cluster: torch.Tensor, drawn: torch.Tensor, plan: np.ndarray) -> float:
        """The latent spread at which the draw's within-cluster expression variance matches the training cells'.

        Every trial factor decodes the same latents with the same count noise, so the variance grows with it.
        """
        n_k, step, w = len(self._clusters), self.config.sample_batch_size, self.config.guidance
        chunks = [np.arange(i, min(i + step, data.n_obs)) for i in range(0, data.n_obs, step)]
        target = within_cluster_variance(((data(idx), cluster[idx]) for idx in chunks), n_k)
        plan_cpu = torch.as_tensor(plan, dtype=torch.long)
        noise_seed = int(self._rng.integers(2**31))
        forked = [self.device] if self.device.type == "cuda" else []

        def variance_at(factor: float) -> float:
            with torch.random.fork_rng(devices=forked):
                torch.manual_seed(noise_seed)
                cells = (
                    (self._decode(drawn[i : i + step], plan[i : i + step], w, factor), plan_cpu[i : i + step])
                    for i in range(0, plan.size, step)
                )
                return within_cluster_variance(cells, n_k)

        return fit_spread(variance_at, target, _SPREAD_RANGE[0], _SPREAD_RANGE[1], _SPREAD_BISECTIONS)

    @torch.no_grad()
    def _cluster_sums(self, data: CountData, idx: np.ndarray, cluster: torch.Tensor) -> torch.Tensor:
        """Summed counts per cluster (rows) over the cells `idx`."""
        sums = torch.zeros(len(self._clusters), data.n_vars, device=data.device, dtype=torch.float64)
        for start in range(0, idx.size, 1024):
            part = idx[start : start + 1024]
            sums.index_add_(0, cluster[torch.as_tensor(part, device=data.device)], data(part).double())
        return sums

    @torch.no_grad()
    def _fit_dispersion(self, data: CountData, cluster: torch.Tensor) -> torch.Tensor:
        """log theta (clusters x genes) for NB draws around decoded means of the training cells.

        `dispersion="mle"` maximises the NB likelihood, `"moments"` matches the variance beyond Poisson. With
        `dispersion_by="cluster"` each cluster's estimate leans on the all-cluster one as if that came from
        `dispersion_prior_cells` more cells; with `"gene"` every cluster shares the all-cluster estimate.
        """
        cfg, n_k = self.config, len(self._clusters)
        if cfg.dispersion == "learned":
            return self._ae.log_theta.detach().clone().expand(n_k, -1).contiguous()
        if cfg.dispersion == "mle":
            own, pooled, n_cells = self._dispersion_mle(data, cluster)
        else:
            own, pooled, n_cells = self._dispersion_moments(data, cluster)
        overdispersed = pooled < math.log(POISSON_THETA) - 1e-3
        self.diagnostics["dispersion_poisson_genes"] = float(1 - overdispersed.float().mean())
        if bool(overdispersed.any()):
            self.diagnostics["dispersion_theta_median"] = float(pooled[overdispersed].exp().median())
        if cfg.dispersion_by == "gene":
            return pooled.expand(n_k, -1).contiguous()
        return shrink_log_theta(own, pooled, n_cells, cfg.dispersion_prior_cells)

    def _dispersion_moments(
        self, data: CountData, cluster: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_k, floor = len(self._clusters), self.config.dispersion_floor
        mean_sq = torch.zeros(n_k, data.n_vars, device=data.device)
        excess = torch.zeros(n_k, data.n_vars, device=data.device)
        for start in range(0, data.n_obs, 1024):
            idx = np.arange(start, min(start + 1024, data.n_obs))
            x, k = data(idx), cluster[torch.as_tensor(idx, device=data.device)]
            mu = self._decoded_mean(x, k)
            for j in torch.unique(k).tolist():
                a, b = residual_moments(x[k == j], mu[k == j])
                mean_sq[j] += a
                excess[j] += b
        own = theta_from_sums(mean_sq, excess, floor)
        pooled = theta_from_sums(mean_sq.sum(0), excess.sum(0), floor)
        return own, pooled, torch.bincount(cluster, minlength=n_k)

    def _dispersion_mle(
        self, data: CountData, cluster: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_k, floor = len(self._clusters), self.config.dispersion_floor
        idx = np.arange(data.n_obs)
        if idx.size > _DISPERSION_MAX_CELLS:
            idx = np.sort(self._rng.choice(idx, size=_DISPERSION_MAX_CELLS, replace=False))
        counts, means = [], []
        for start in range(0, idx.size, 1024):
            part = idx[start : start + 1024]
            x = data(part)
            counts.append(x)
            means.append(self._decoded_mean(x, cluster[torch.as_tensor(part, device=data.device)]))
        x, mu = torch.cat(counts), torch.cat(means)
        k = cluster[torch.as_tensor(idx, device=data.device)]
        own = nb_theta_mle(x, mu, k, n_k, floor)
        pooled = nb_theta_mle(x, mu, torch.zeros_like(k), 1, floor)[0]
        return own, pooled, torch.bincount(k, minlength=n_k)

    @torch.no_grad()
    def _encode_all(
        self, data: CountData, library: np.ndarray, cluster_of: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent of every training cell (plus log library when it diffuses too) and the condition profiles."""
        n_k = len(self._clusters)
        device = data.device
        profiles = torch.zeros(n_k + 1, data.n_vars, device=device)
        counts = torch.zeros(n_k + 1, device=device)
        chunks = []
        cluster_t = torch.as_tensor(cluster_of, device=device)
        for start in range(0, data.n_obs, 1024):
            idx = np.arange(start, min(start + 1024, data.n_obs))
            x = data(idx)
            chunks.append(self._ae.encode(x).float())
            logged = log_normalise(x)
            profiles.index_add_(0, cluster_t[idx], logged)
            counts.index_add_(0, cluster_t[idx], torch.ones(len(idx), device=device))
        profiles[n_k] = profiles[:n_k].sum(0)
        counts[n_k] = counts[:n_k].sum()
        profiles = profiles / counts.clamp(min=1)[:, None]
        latents = torch.cat(chunks)
        if self.config.library == "latent":
            log_lib = torch.as_tensor(np.log(np.maximum(library, 1.0)), device=device, dtype=torch.float32)
            latents = torch.cat([latents, log_lib[:, None]], dim=1)
        return latents, profiles

    # ----------------------------------------------------------------- generation
    @torch.no_grad()
    def _sample_latents(self, cluster_idx: np.ndarray, w: float, sampler: str | None = None) -> torch.Tensor:
        """Latents in the diffusion's space for cells of the given cluster indices, batch by batch."""
        size = self.config.sample_batch_size
        return torch.cat(
            [self._sample_latent_batch(cluster_idx[i : i + size], w, sampler) for i in range(0, len(cluster_idx), size)]
        )

    @torch.no_grad()
    def _sample_latent_batch(self, cluster_idx: np.ndarray, w: float, sampler: str | None = None) -> torch.Tensor:
        cfg, device = self.config, self.device
        cond = torch.as_tensor(cluster_idx, device=device, dtype=torch.long)
        model = self._denoiser

        def eps_model(z: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            with autocast(device, cfg.mixed_precision):
                return model(z, t, c).float()

        eps_fn = guided_model(eps_model, len(self._clusters), float(w))
        dim = self._scaler.dim
        bound = getattr(self, "_latent_bound", None) if cfg.clips_latents else None
        if (sampler or cfg.sampler) == "ddim":
            return ddim_sample(eps_fn, self._schedule, cond, dim, cfg.ddim_steps, eta=cfg.ddim_eta, clip_x0=bound)
        return ddpm_sample(eps_fn, self._schedule, cond, dim, clip_x0=bound)

    @torch.no_grad()
    def _decode(
        self, z: torch.Tensor, cluster_idx: np.ndarray, w: float, spread: float | None = None
    ) -> torch.Tensor:
        """Counts (CPU tensor) from latents in the diffusion's space: calibration, decoder, library, count draw.

        `spread` replaces the model's latent spread factor (used while fitting it).
        """
        cfg, device = self.config, self.device
        cond = torch.as_tensor(cluster_idx, device=device, dtype=torch.long)
        if float(w) == cfg.guidance:
            offset = getattr(self, "_latent_offset", None)
            if offset is not None:
                z = z + offset[cond]
            centre = getattr(self, "_latent_centre", None)
            if spread is None:
                fitted = getattr(self, "_latent_spread", 1.0)
                spread = fitted if cfg.latent_calibration == "spread" else cfg.latent_spread
            if centre is not None and spread != 1.0:
                z = spread_about(z, centre[cond], spread)
        z = self._scaler.from_diffusion(z)
        if cfg.library == "latent":
            lib = torch.exp(z[:, -1]).clamp(min=1.0)
            z = z[:, :-1]
        else:
            lib = torch.as_tensor(
                np.concatenate([self._rng.choice(self._libraries[k], size=1) for k in cluster_idx]),
                device=device,
                dtype=torch.float32,
            )
        with autocast(device, cfg.mixed_precision):
            profile = self._ae.profile(z, cond)
        return draw_counts(profile * lib[:, None], cfg.count_sampling, self._log_theta[cond]).cpu()

    @torch.no_grad()
    def _generate_batch(self, cluster_idx: np.ndarray, w: float, sampler: str | None = None) -> torch.Tensor:
        """Counts (CPU tensor) for one batch of cells of the given cluster indices, without the scorer."""
        return self._decode(self._sample_latent_batch(cluster_idx, w, sampler), cluster_idx, w)

    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None) -> SampleOutput:
        cfg = self.config
        w = cfg.guidance if guidance is None else float(guidance)
        assigned = labels
        if assigned is None:
            assigned = self.proportional_labels(n_cells) if self.label_categories else np.repeat("all", n_cells)
        cluster_idx = np.searchsorted(np.asarray(self._clusters), assigned)
        keep = cfg.keep_fraction if self._scorer is not None else 1.0
        # per cluster, draw enough cells that keeping the best `keep` fraction leaves exactly what was asked
        wanted = {int(k): int((cluster_idx == k).sum()) for k in np.unique(cluster_idx)}
        drawn = {k: max(n, math.ceil(n / keep)) for k, n in wanted.items()}
        plan = np.concatenate([np.full(n, k) for k, n in drawn.items()])
        size = cfg.sample_batch_size
        jobs = (self._generate_batch(plan[i : i + size], w) for i in range(0, plan.size, size))
        if self._scorer is not None:
            scorer, device = self._scorer, self.device
            cells, scores = score_beside(jobs, lambda b: scorer.realness(b.to(device)).cpu(), cfg.queue_size)
            score = torch.cat(scores).numpy()
        else:
            cells, score = list(jobs), np.zeros(plan.size)
        generated = torch.cat(cells).numpy()
        out = np.empty((n_cells, self.n_genes), dtype=np.float32)
        for k, n in wanted.items():
            pool = np.flatnonzero(plan == k)
            chosen = pool[top_indices(score[pool], n)]
            out[np.flatnonzero(cluster_idx == k)] = generated[chosen]
        marginals = getattr(self, "_marginals", None)
        if marginals is not None and w == cfg.guidance:
            out = self._map_marginals(out, cluster_idx, *marginals)
        if labels is None and self.label_categories:
            return out, assigned
        return out

    @torch.no_grad()
    def _map_marginals(
        self, cells: np.ndarray, cluster_idx: np.ndarray, source: MarginalSketch, target: MarginalSketch
    ) -> np.ndarray:
        out = np.empty_like(cells)
        step = self.config.sample_batch_size
        for k in np.unique(cluster_idx):
            rows = np.flatnonzero(cluster_idx == k)
            for i in range(0, rows.size, step):
                part = rows[i : i + step]
                x = torch.as_tensor(cells[part], device=self.device)
                out[part] = map_counts(x, int(k), source, target).cpu().numpy()
        return out

    # ----------------------------------------------------------------- diagnostics
    @torch.no_grad()
    def reconstruct(self, adata: ad.AnnData, seed: int = 0) -> np.ndarray:
        """Real cells through encoder and decoder, drawn as counts at each cell's own library size.

        Cells are decoded in their own cluster, read from `adata.obs[labels_key]` when the model has labels.
        """
        torch.manual_seed(seed)
        x = to_dense(adata[:, self.var_names].X if self.var_names is not None else adata.X)
        cluster = torch.as_tensor(self._cluster_index(adata), device=self.device)
        out = []
        for start in range(0, x.shape[0], 1024):
            k = cluster[start : start + 1024]
            mean = self._decoded_mean(torch.as_tensor(x[start : start + 1024], device=self.device), k)
            out.append(draw_counts(mean, self.config.count_sampling, self._log_theta[k]).cpu().numpy())
        return np.concatenate(out)

    def _cluster_index(self, adata: ad.AnnData) -> np.ndarray:
        if not self.label_categories:
            return np.zeros(adata.n_obs, dtype=np.int64)
        if self.labels_key not in adata.obs:
            raise ScldbenchError(
                f"scld: cells to reconstruct need their label column {self.labels_key!r} in obs (the model decodes "
                "each cell in its own cluster)"
            )
        labels = self._resolve_labels(adata.n_obs, adata.obs[self.labels_key].astype(str).to_numpy())
        return np.searchsorted(np.asarray(self._clusters), labels)

    def _decoded_mean(self, counts: torch.Tensor, cluster: torch.Tensor) -> torch.Tensor:
        """Each cell encoded and decoded in its cluster: its expected counts at its own library size."""
        with autocast(self.device, self.config.mixed_precision):
            profile = self._ae.profile(self._ae.encode(counts), cluster)
        return profile.float() * counts.sum(1, keepdim=True)

    def diagnose(
        self, unseen: ad.AnnData, test: ad.AnnData, *, protocol: str, seed: int, n_trees: int | None = None
    ) -> dict[str, Any]:
        """The autoencoder's ceiling: real cells it never saw, encoded and decoded, scored against real test cells."""
        return {"ae_ceiling": self.autoencoder_ceiling(test, unseen, protocol=protocol, seed=seed, n_trees=n_trees)}

    def autoencoder_ceiling(
        self,
        test_adata: ad.AnnData,
        reference_adata: ad.AnnData,
        *,
        protocol: str = "scgan-v1",
        seed: int = 0,
        n_trees: int | None = None,
    ) -> dict[str, float]:
        """Score reconstructed `reference_adata` cells (real, unseen in training) against real `test_adata` cells.

        It measures the autoencoder and count model on cells they did not fit; generated cells decode latents drawn
        like the training cells', so SCLD's own score can fall below it.
        """
        from scldbench.protocols import get_protocol

        recon = self.reconstruct(reference_adata, seed=seed)
        scores = get_protocol(protocol).evaluate(test_adata[:, self.var_names].X, recon, seed=seed, n_trees=n_trees)
        self.diagnostics["ae_ceiling"] = scores
        return scores
