"""SCLD: single-cell latent diffusion with pre-guidance (cluster conditioning) and post-guidance (a scorer)."""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import torch

from scldbench.data.counts import to_dense
from scldbench.errors import ScldbenchError
from scldbench.generator import Generator, SampleOutput
from scldbench.scld import stages
from scldbench.scld.calibration import spread_about
from scldbench.scld.config import RUNTIME_OPTIONS, SCLDConfig
from scldbench.scld.count_noise import draw_counts
from scldbench.scld.marginals import map_counts
from scldbench.scld.sampling import ddim_sample, ddpm_sample, guided_model
from scldbench.scld.scorer import Scorer, score_beside, top_indices
from scldbench.scld.stages import LatentCalibration, MarginalMap, TrainingCells
from scldbench.scld.training import CountData, autocast

log = logging.getLogger("scldbench.scld")


class SCLD(Generator):
    """Autoencoder -> conditional latent DDPM -> decoder and count sampling -> scorer keeps the best cells.

    Parameters
    ----------
    preset
        The configuration to start from: ``"paper"`` (the paper's sizes, the default) or ``"cpu"`` (sized for two
        CPU cores). See :class:`scldbench.scld.config.SCLDConfig`.
    **options
        Settings that replace the preset's, by their names in the config sections (``steps=2000``,
        ``guidance=0.5``, ...); unknown names and wrong types are refused.
    seed, device
        As for every generator.

    Fitted state (after ``fit``): ``clusters_``, ``autoencoder_``, ``count_model_``, ``diffusion_``,
    ``calibration_``, ``scorer_`` and ``marginals_``; ``diagnostics_`` holds the fit's figures. `save` stores
    these whole (through the safe loader's allow-list: the networks sit inside fitted dataclasses); the
    configuration comes back from the parameters.
    """

    name = "scld"
    description = "single-cell latent diffusion with pre-guidance (cluster means) and post-guidance (scorer)"
    conditional = True
    supports_guidance = True
    #: parameters that change how fast SCLD runs, not what it samples from; they stay out of job keys
    runtime_params: ClassVar[tuple[str, ...]] = RUNTIME_OPTIONS

    def __init__(self, *, preset: str = "paper", seed: int = 0, device: str = "auto", **options: Any) -> None:
        super().__init__(seed=seed, device=device)
        self.preset = preset
        self.config = SCLDConfig.preset(preset, **options)
        self.diagnostics_: dict[str, Any] = {}

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """`preset` and every setting, with the paper preset's value as its default."""
        return {"seed": 0, "device": "auto", "preset": "paper"} | SCLDConfig.paper().flat()

    def get_params(self) -> dict[str, Any]:
        return {"preset": self.preset} | self.config.flat() | {"seed": self.seed, "device": self.device_name}

    # ----------------------------------------------------------------- fit
    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        cfg, rng, amp = self.config, self._rng, self.config.runtime.mixed_precision
        cells = self._training_cells(adata, labels)
        self.diagnostics_ = {"device": str(self.device), "n_train": int(adata.n_obs), "n_genes": int(adata.n_vars)}
        fit = stages.FitFigures(self.diagnostics_)
        # 1-2: autoencoder, then the count model around its reconstructions
        self.autoencoder_ = fit(stages.fit_autoencoder(cells, cfg.autoencoder, amp, rng))
        self.count_model_ = fit(stages.fit_count_model(cells, self.autoencoder_, cfg.counts, amp, rng))
        # 3: pre-guided latent diffusion
        latents, profiles = stages.encode_cells(cells, self.autoencoder_, cfg.counts.library == "latent")
        self.diffusion_, latents = fit(stages.fit_diffusion(cells, latents, profiles, cfg.diffusion, amp, rng))
        # 4-6: calibrations and post-guidance, from the model's own draws
        self._calibrate(cells, latents)
        fit.done()

    def _calibrate(self, cells: TrainingCells, latents: torch.Tensor) -> None:
        """Stages 4-6, from the model's own draws: latent calibration, scorer, marginal map. `latents` are the
        training cells' in the diffusion's space."""
        cfg, rng, w = self.config, self._rng, self.config.sampling.guidance
        fit = stages.FitFigures(self.diagnostics_)
        # 4-5: a draw for the training cells' own clusters calibrates the latents and trains the scorer
        self.calibration_ = LatentCalibration(None, stages.fixed_spread(cfg.calibration))
        self.scorer_: Scorer | None = None
        if cfg.calibration.latent_calibration != "none" or cfg.scoring.scorer:
            with fit.timed("calibration_seconds"):
                plan = stages.plan_draw(cells, rng)
                drawn = self._sample_latents(plan, w, fit_time=True)
                self.calibration_ = fit(stages.fit_latent_calibration(
                    cells, latents, drawn, plan, cfg.calibration, self._decode_with, self._batch, rng))
            if cfg.scoring.scorer:
                generated = self._decode_batches(drawn, plan, w)
                self.scorer_ = fit(stages.fit_scorer(cells, generated, cfg.scoring, cfg.diffusion.batch_size, rng))
        # 6: each gene's distribution within a cluster mapped onto the training cells'
        self.marginals_: MarginalMap | None = None
        if cfg.marginals.marginal_calibration == "quantile":
            self.marginals_ = fit(stages.fit_marginal_map(
                cells, cfg.marginals, lambda plan: self._draw_cells(plan, w, fit_time=True), rng))

    def _training_cells(self, adata: ad.AnnData, labels: np.ndarray | None) -> TrainingCells:
        self.clusters_ = list(self.label_categories) if labels is not None else ["all"]
        cluster_of = (
            np.searchsorted(np.asarray(self.clusters_), labels) if labels is not None else np.zeros(adata.n_obs, int)
        )
        data = CountData(adata.X, self.device)
        cluster = torch.as_tensor(cluster_of, device=self.device, dtype=torch.long)
        return TrainingCells(data, cluster_of, cluster, len(self.clusters_), data.library())

    @property
    def _batch(self) -> int:
        return self.config.runtime.sample_batch_size

    # ----------------------------------------------------------------- generation
    @torch.no_grad()
    def _sample_latents(self, cluster_idx: np.ndarray, w: float, fit_time: bool = False) -> torch.Tensor:
        """Latents in the diffusion's space for cells of the given cluster indices, batch by batch (`fit_time`:
        with the sampler of the fit's own draws)."""
        size = self._batch
        return torch.cat([
            self._sample_latent_batch(cluster_idx[i : i + size], w, fit_time) for i in range(0, len(cluster_idx), size)
        ])

    @torch.no_grad()
    def _sample_latent_batch(self, cluster_idx: np.ndarray, w: float, fit_time: bool = False) -> torch.Tensor:
        cfg, device, diffusion = self.config, self.device, self.diffusion_
        cond = torch.as_tensor(cluster_idx, device=device, dtype=torch.long)
        model, amp = diffusion.denoiser, cfg.runtime.mixed_precision

        def eps_model(z: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            with autocast(device, amp):
                return model(z, t, c).float()

        eps_fn = guided_model(eps_model, len(self.clusters_), float(w))
        dim = diffusion.scaler.dim
        bound = diffusion.bound if cfg.diffusion.clips_latents else None
        sampling = cfg.sampling
        sampler, ddim_steps = sampling.fit_time() if fit_time else (sampling.sampler, sampling.ddim_steps)
        if sampler == "ddim":
            return ddim_sample(eps_fn, diffusion.schedule, cond, dim, ddim_steps, eta=sampling.ddim_eta, clip_x0=bound)
        return ddpm_sample(eps_fn, diffusion.schedule, cond, dim, clip_x0=bound)

    @torch.no_grad()
    def _decode_with(self, z: torch.Tensor, cluster_idx: np.ndarray, calibration: LatentCalibration) -> torch.Tensor:
        """Counts (CPU tensor) from latents drawn at the configured guidance, calibrated by `calibration`."""
        return self._decode(z, cluster_idx, self.config.sampling.guidance, calibration)

    @torch.no_grad()
    def _decode_batches(self, z: torch.Tensor, cluster_idx: np.ndarray, w: float) -> torch.Tensor:
        step = self._batch
        return torch.cat([self._decode(z[i : i + step], cluster_idx[i : i + step], w) for i in range(0, len(z), step)])

    @torch.no_grad()
    def _decode(
        self, z: torch.Tensor, cluster_idx: np.ndarray, w: float, calibration: LatentCalibration | None = None,
    ) -> torch.Tensor:
        """Counts (CPU tensor) from latents in the diffusion's space: calibration (at the configured guidance only),
        decoder, library size, count draw."""
        cfg, device, diffusion = self.config, self.device, self.diffusion_
        cond = torch.as_tensor(cluster_idx, device=device, dtype=torch.long)
        if float(w) == cfg.sampling.guidance:
            calibration = calibration or self.calibration_
            if calibration.offset is not None:
                z = z + calibration.offset[cond]
            if calibration.spread != 1.0:
                z = spread_about(z, diffusion.centre[cond], calibration.spread)
        z = diffusion.scaler.from_diffusion(z)
        if cfg.counts.library == "latent":
            lib = torch.exp(z[:, -1]).clamp(min=1.0)
            z = z[:, :-1]
        else:
            libraries = self.count_model_.libraries
            lib = torch.as_tensor(
                np.concatenate([self._rng.choice(libraries[k], size=1) for k in cluster_idx]),
                device=device,
                dtype=torch.float32,
            )
        with autocast(device, cfg.runtime.mixed_precision):
            profile = self.autoencoder_.profile(z, cond)
        counts = draw_counts(profile * lib[:, None], cfg.counts.count_sampling, self.count_model_.log_theta[cond])
        return counts.cpu()

    @torch.no_grad()
    def _generate_batch(self, cluster_idx: np.ndarray, w: float, fit_time: bool = False) -> torch.Tensor:
        """Counts (CPU tensor) for one batch of cells of the given cluster indices, without the scorer."""
        return self._decode(self._sample_latent_batch(cluster_idx, w, fit_time), cluster_idx, w)

    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None) -> SampleOutput:
        w = self.config.sampling.guidance if guidance is None else float(guidance)
        assigned = labels
        if assigned is None:
            assigned = self.proportional_labels(n_cells) if self.label_categories else np.repeat("all", n_cells)
        out = self._draw_cells(np.searchsorted(np.asarray(self.clusters_), assigned), w)
        if labels is None and self.label_categories:
            return out, assigned
        return out

    def _draw_cells(self, cluster_idx: np.ndarray, w: float, fit_time: bool = False) -> np.ndarray:
        """Counts for cells of the given cluster indices: drawn, the best kept by the scorer, marginals mapped."""
        cfg, n_cells = self.config, cluster_idx.size
        keep = cfg.scoring.keep_fraction if self.scorer_ is not None else 1.0
        # per cluster, draw enough cells that keeping the best `keep` fraction leaves exactly what was asked
        wanted = {int(k): int((cluster_idx == k).sum()) for k in np.unique(cluster_idx)}
        drawn = {k: max(n, math.ceil(n / keep)) for k, n in wanted.items()}
        plan = np.concatenate([np.full(n, k) for k, n in drawn.items()])
        size = self._batch
        jobs = (self._generate_batch(plan[i : i + size], w, fit_time) for i in range(0, plan.size, size))
        if self.scorer_ is not None:
            scorer, device = self.scorer_, self.device
            cells, scores = score_beside(jobs, lambda b: scorer.realness(b.to(device)).cpu(), cfg.runtime.queue_size)
            score = torch.cat(scores).numpy()
        else:
            cells, score = list(jobs), np.zeros(plan.size)
        generated = torch.cat(cells).numpy()
        out = np.empty((n_cells, self.n_genes), dtype=np.float32)
        for k, n in wanted.items():
            pool = np.flatnonzero(plan == k)
            chosen = pool[top_indices(score[pool], n)]
            out[np.flatnonzero(cluster_idx == k)] = generated[chosen]
        if self.marginals_ is not None and w == cfg.sampling.guidance:
            out = self._map_marginals(out, cluster_idx, self.marginals_)
        return out

    @torch.no_grad()
    def _map_marginals(self, cells: np.ndarray, cluster_idx: np.ndarray, marginals: MarginalMap) -> np.ndarray:
        out = np.empty_like(cells)
        step = self._batch
        for k in np.unique(cluster_idx):
            rows = np.flatnonzero(cluster_idx == k)
            for i in range(0, rows.size, step):
                part = rows[i : i + step]
                x = torch.as_tensor(cells[part], device=self.device)
                out[part] = map_counts(x, int(k), marginals.source, marginals.target).cpu().numpy()
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
        amp, how = self.config.runtime.mixed_precision, self.config.counts.count_sampling
        log_theta = self.count_model_.log_theta
        out = []
        for start in range(0, x.shape[0], 1024):
            k = cluster[start : start + 1024]
            counts = torch.as_tensor(x[start : start + 1024], device=self.device)
            mean = stages.decoded_mean(self.autoencoder_, counts, k, amp)
            out.append(draw_counts(mean, how, log_theta[k]).cpu().numpy())
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
        return np.searchsorted(np.asarray(self.clusters_), labels)

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
        self.diagnostics_["ae_ceiling"] = scores
        return scores

