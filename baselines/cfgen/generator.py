"""CFGen (Palma et al., ICLR 2025): flow matching in the latent space of a negative-binomial count autoencoder.

Written from the published description. Stage one trains an autoencoder on raw counts: the encoder reads
log1p of library-normalised counts, the decoder returns gene proportions whose product with the cell's library
size is the mean of a negative binomial with one inverse dispersion per gene, learned with the weights and
then set to its maximum-likelihood value given the trained decoder's means (`dispersion="mle"`). Stage two standardises
the encoded training cells and learns a velocity field on straight paths from N(0, I) to them, conditioned on
time, the cell's label (with a null token for classifier-free guidance) and its log library size. Sampling
draws a library size from the training cells of the requested label, integrates the ODE from noise to a latent,
decodes it and draws NB counts. The test set is never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import torch

from scldbench.baselines._torch_common import LibraryPrior, check_sizes, encode_labels, in_chunks
from scldbench.baselines.cfgen.dispersion import refit_log_theta
from scldbench.baselines.cfgen.flow import SOLVERS, guided_velocity, integrate
from scldbench.baselines.cfgen.modules import CountAutoencoder, VelocityField
from scldbench.baselines.cfgen.training import train_flow
from scldbench.counts.numpy import moment_log_theta
from scldbench.counts.torch import sample_nb
from scldbench.errors import ScldbenchError
from scldbench.generator import Generator, SampleOutput
from scldbench.scld.latent_scaling import fit_latent_scaler
from scldbench.scld.training import CountData, train_autoencoder, validation_split

log = logging.getLogger("scldbench.cfgen")
# fewer validation (or fitting) cells than this and the autoencoder fits on every cell
_MIN_VALIDATION_CELLS = 32
# cells the method-of-moments start of the dispersions is computed from
_DISPERSION_INIT_CELLS = 10_000
# cells the maximum-likelihood dispersions are fitted on (dense float64 cells x genes, several copies)
_DISPERSION_MLE_CELLS = 2_000
DISPERSIONS = ("mle", "learned")


class CFGen(Generator):
    """NB count autoencoder, then label- and size-conditioned flow matching in its latent space.

    Defaults are the paper's configuration (encoder 512-256 to a 50-d latent, 200 autoencoder epochs at batch
    128; a velocity field of 3 residual blocks of width 512 with 256-d embeddings, 1,000 epochs at batch 256,
    learning rate 1e-4): sized for a GPU. suites/pbmc.toml holds CPU-sized settings.

    `guidance` w (here or per `sample` call): v = (1 + w) v(z, label) - w v(z, null); 0 is the plain conditional
    field, -1 the unconditional one. The ODE is solved from t = 0 to 1 with `ode_steps` steps of `ode_solver`.
    """

    name = "cfgen"
    description = "CFGen-style latent flow matching on an NB count autoencoder (label + size-factor conditioning)"
    conditional = True
    supports_guidance = True
    weight_modules = ("autoencoder_", "velocity_")

    def __init__(
        self,
        *,
        latent_dim: int = 50,
        encoder_layers: Sequence[int] = (512, 256),
        ae_epochs: int = 200,
        ae_batch_size: int = 128,
        ae_lr: float = 1e-3,
        ae_weight_decay: float = 1e-5,
        ae_validation: float = 0.1,
        flow_hidden: int = 512,
        flow_blocks: int = 3,
        embedding_dim: int = 256,
        flow_dropout: float = 0.0,
        flow_epochs: int = 1000,
        flow_batch_size: int = 256,
        flow_lr: float = 1e-4,
        flow_weight_decay: float = 1e-5,
        grad_clip: float = 1.0,
        label_dropout: float = 0.2,
        condition_on_size: bool = True,
        dispersion: str = "mle",
        guidance: float = 0.0,
        ode_solver: str = "midpoint",
        ode_steps: int = 50,
        sample_batch_size: int = 4096,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(seed=seed, device=device)
        self.latent_dim = _positive("latent_dim", latent_dim)
        self.encoder_layers = check_sizes("encoder_layers", encoder_layers)
        self.ae_epochs = _positive("ae_epochs", ae_epochs, allow_zero=True)
        self.ae_batch_size = _positive("ae_batch_size", ae_batch_size)
        self.ae_lr = float(ae_lr)
        self.ae_weight_decay = float(ae_weight_decay)
        if not 0.0 <= ae_validation < 1.0:
            raise ScldbenchError(f"ae_validation must be a fraction in [0, 1), got {ae_validation!r}")
        self.ae_validation = float(ae_validation)
        self.flow_hidden = _positive("flow_hidden", flow_hidden)
        self.flow_blocks = _positive("flow_blocks", flow_blocks)
        self.embedding_dim = _positive("embedding_dim", embedding_dim)
        self.flow_dropout = float(flow_dropout)
        self.flow_epochs = _positive("flow_epochs", flow_epochs, allow_zero=True)
        self.flow_batch_size = _positive("flow_batch_size", flow_batch_size)
        self.flow_lr = float(flow_lr)
        self.flow_weight_decay = float(flow_weight_decay)
        self.grad_clip = float(grad_clip)
        if not 0.0 <= label_dropout <= 1.0:
            raise ScldbenchError(f"label_dropout must be a fraction in [0, 1], got {label_dropout!r}")
        self.label_dropout = float(label_dropout)
        self.condition_on_size = bool(condition_on_size)
        if dispersion not in DISPERSIONS:
            raise ScldbenchError(f"dispersion must be one of {', '.join(DISPERSIONS)}, got {dispersion!r}")
        self.dispersion = dispersion
        self.guidance = float(guidance)
        if ode_solver not in SOLVERS:
            raise ScldbenchError(f"ode_solver must be one of {', '.join(SOLVERS)}, got {ode_solver!r}")
        self.ode_solver = ode_solver
        self.ode_steps = _positive("ode_steps", ode_steps)
        self.sample_batch_size = _positive("sample_batch_size", sample_batch_size)
        self.diagnostics_: dict[str, Any] = {}

    # ----------------------------------------------------------------- fit
    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        device = self.device
        data = CountData(adata.X, device)
        library = data.library().astype(np.float64)
        n_classes = len(self.label_categories) if labels is not None else 0
        cluster_of = (np.searchsorted(np.asarray(self.label_categories), labels) if labels is not None
                      else np.zeros(adata.n_obs, dtype=np.int64))
        # LibraryPrior sums each row: a one-column matrix of library sizes keeps them as they are
        self.library_prior_ = LibraryPrior(library[:, None], labels)

        fit_idx, val_idx = validation_split(cluster_of, self.ae_validation, self._rng, _MIN_VALIDATION_CELLS)
        if fit_idx.size % self.ae_batch_size == 1 and fit_idx.size > 1:
            fit_idx = fit_idx[:-1]  # a last batch of one cell cannot pass batch norm
        self.autoencoder_ = self._build_module("autoencoder_")
        init_cells = fit_idx if fit_idx.size <= _DISPERSION_INIT_CELLS else np.sort(
            self._rng.choice(fit_idx, size=_DISPERSION_INIT_CELLS, replace=False))
        with torch.no_grad():
            init = moment_log_theta(data(init_cells).cpu().numpy(), None, 1)[0]
            self.autoencoder_.log_theta.copy_(torch.as_tensor(init, device=device))
        self.diagnostics_ = {"n_train": int(adata.n_obs), "n_genes": int(adata.n_vars),
                            "ae_validation_cells": int(val_idx.size)}
        self.diagnostics_ |= train_autoencoder(
            self.autoencoder_, data, self.ae_epochs, self.ae_lr, self.ae_batch_size, self.ae_weight_decay,
            self._rng, False, log.info, train_idx=fit_idx, val_idx=val_idx,
        )
        self.autoencoder_.eval()
        if self.dispersion == "mle":
            self._refit_dispersion(data, fit_idx)

        latents = self._encode(data)
        self.scaler_ = fit_latent_scaler(latents, "standard")
        log_lib = np.log(np.maximum(library, 1.0))
        self.log_size_stats_ = (float(log_lib.mean()), float(max(log_lib.std(), 1e-3)))
        y = (torch.as_tensor(cluster_of, dtype=torch.long, device=device) if labels is not None
             else torch.zeros(adata.n_obs, dtype=torch.long, device=device))
        self.velocity_ = self._build_module("velocity_")
        self.diagnostics_ |= train_flow(
            self.velocity_, self.scaler_.to_diffusion(latents), y, self._standard_log_size(library),
            epochs=self.flow_epochs, batch_size=self.flow_batch_size, lr=self.flow_lr,
            weight_decay=self.flow_weight_decay, label_dropout=self.label_dropout if n_classes else 0.0,
            grad_clip=self.grad_clip, rng=self._rng, log=log.info,
        )

    def _refit_dispersion(self, data: CountData, fit_idx: np.ndarray) -> None:
        cells = fit_idx if fit_idx.size <= _DISPERSION_MLE_CELLS else np.sort(
            self._rng.choice(fit_idx, size=_DISPERSION_MLE_CELLS, replace=False))
        learned = self.autoencoder_.log_theta.detach().clone()
        fitted = refit_log_theta(self.autoencoder_, data, cells)
        with torch.no_grad():
            self.autoencoder_.log_theta.copy_(fitted)
        self.diagnostics_ |= {"theta_learned_median": float(learned.exp().median()),
                              "theta_mle_median": float(fitted.exp().median()),
                              "theta_mle_log_shift_median": float((fitted - learned).abs().median())}

    def _build_module(self, name: str) -> torch.nn.Module:
        if name == "autoencoder_":
            return CountAutoencoder(self.n_genes, self.encoder_layers, self.latent_dim).to(self.device)
        return VelocityField(
            self.latent_dim, len(self.label_categories), hidden=self.flow_hidden, n_blocks=self.flow_blocks,
            embedding_dim=self.embedding_dim, dropout=self.flow_dropout, condition_on_size=self.condition_on_size,
        ).to(self.device)

    @torch.no_grad()
    def _encode(self, data: CountData) -> torch.Tensor:
        step = self.sample_batch_size
        return torch.cat([
            self.autoencoder_.encode(data(np.arange(i, min(i + step, data.n_obs)))) for i in range(0, data.n_obs, step)
        ])

    def _standard_log_size(self, library: np.ndarray) -> torch.Tensor:
        mean, std = self.log_size_stats_
        log_lib = np.log(np.maximum(library, 1.0))
        return torch.as_tensor((log_lib - mean) / std, dtype=torch.float32, device=self.device)

    # ----------------------------------------------------------------- sample
    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None) -> SampleOutput:
        conditioned = self.velocity_.n_classes > 0
        chosen = labels if labels is not None else (self.proportional_labels(n_cells) if conditioned else None)
        libraries = self.library_prior_.draw(chosen if conditioned else None, n_cells, self._rng, kind="empirical")
        lib_t = torch.as_tensor(libraries, dtype=torch.float32, device=self.device)
        log_size = self._standard_log_size(libraries)
        null = self.velocity_.null_index
        y_all = (encode_labels(chosen, self.label_categories, self.device) if conditioned
                 else torch.full((n_cells,), null, dtype=torch.long, device=self.device))
        w = self.guidance if guidance is None else float(guidance)
        if not conditioned:
            w = 0.0  # one field only: nothing to guide between
        self.velocity_.eval()
        self.autoencoder_.eval()

        def chunk(start: int, stop: int) -> torch.Tensor:
            y, s = y_all[start:stop], log_size[start:stop]

            def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                if w == 0:
                    return self.velocity_(x, t, y, s)
                if w == -1:
                    return self.velocity_(x, t, torch.full_like(y, null), s)
                both = self.velocity_(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null)]),
                                      torch.cat([s, s]))
                v_cond, v_null = both.chunk(2)
                return guided_velocity(v_cond, v_null, w)

            x0 = torch.randn(stop - start, self.latent_dim, device=self.device)
            z = self.scaler_.from_diffusion(integrate(field, x0, self.ode_steps, self.ode_solver))
            mean = self.autoencoder_.proportions(z) * lib_t[start:stop, None]
            return sample_nb(mean.clamp(min=0), self.autoencoder_.log_theta.detach().exp()).cpu()

        counts = torch.cat(in_chunks(chunk, n_cells, self.sample_batch_size)).numpy()
        return (counts, chosen) if chosen is not None else counts


def _positive(name: str, value: int, allow_zero: bool = False) -> int:
    if int(value) != value or value < (0 if allow_zero else 1):
        raise ScldbenchError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}")
    return int(value)
