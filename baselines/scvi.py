"""scVI and scANVI from scvi-tools (Lopez et al. 2018; Xu et al. 2021) as generators: `pip install 'scldbench[scvi]'`.

Training is scvi-tools' own (`SCVI.train`, then `SCANVI.from_scvi_model(...).train` when labels are given).
Generation samples the generative model only, never the posterior of real cells:

- scANVI (fitted with labels): z2 ~ N(0, I), z1 ~ N(m(z2, y), v(z2, y)) from the module's `decoder_z1_z2`, the
  label-conditioned prior of scANVI's hierarchical latent;
- scVI (fitted without labels): z ~ N(0, I);

then each cell's library size is drawn from the training cells of its cluster (all training cells without
labels), and counts are drawn from the likelihood the decoder returns (ZINB by default, or NB). Once fitted,
the generator keeps the trained module's weights and the training library sizes only: no AnnData and no
scvi-tools model object, so sampling cannot encode any cell, training or other.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scldbench.baselines._torch_common import LibraryPrior, in_chunks
from scldbench.counts.numpy import library_sizes
from scldbench.errors import ScldbenchError
from scldbench.generator import Generator

LIKELIHOODS = ("zinb", "nb")
_LABELS = "_scldbench_label"
_UNLABELLED = "_scldbench_unlabelled"
_QUIET_LOGGERS = ("scvi", "lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                  "lightning_fabric")


@contextlib.contextmanager
def quiet_scvi() -> Iterator[None]:
    """Silence scvi-tools' and Lightning's progress bars, info logs and warnings for the duration."""
    import scvi

    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    verbosity = scvi.settings.verbosity
    try:
        scvi.settings.verbosity = logging.ERROR
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        scvi.settings.verbosity = verbosity
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _trainer_settings(max_epochs: int | None, batch_size: int, device: torch.device, kl_warmup_epochs: int | None
                      ) -> dict[str, Any]:
    """scvi-tools `train` arguments; `kl_warmup_epochs=None` trains at full KL weight from the first step."""
    return {
        "plan_kwargs": {"n_epochs_kl_warmup": kl_warmup_epochs},
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "train_size": 1.0,  # the benchmark holds out its own test cells; scvi's validation split would idle
        "accelerator": "gpu" if device.type == "cuda" else "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
    }


class ScviTools(Generator):
    """scvi-tools' SCVI (unconditional) or SCANVI (label-conditioned) sampled from its generative model.

    Parameters
    ----------
    n_latent, n_hidden, n_layers, dropout_rate, gene_likelihood
        The network and likelihood, passed to `scvi.model.SCVI` (scvi-tools' defaults: 10, 128, 1, 0.1, "zinb").
    max_epochs
        SCVI training epochs; unset = scvi-tools' rule (400, scaled down beyond 20,000 cells).
    kl_warmup_epochs
        Epochs over which the KL weight rises to 1; unset = half of the SCVI epochs. scvi-tools' own default
        (400 epochs) suits posterior use, but sampling the prior needs the full KL weight: a short fit with it
        ends at a small weight, its latent far from N(0, I), and prior samples fall off the data
        (docs/generators/scvi.md, "KL warm-up").
    scanvi_epochs
        SCANVI epochs after SCVI when fitted with labels; unset = as many as the SCVI stage. scvi-tools' own rule
        for a pretrained SCVI (at most 10) suits label transfer, but the label-conditioned prior p(z1 | z2, y)
        that generation draws from barely trains in 10 epochs: its draws carried no label signal
        (docs/generators/scvi.md, "SCANVI epochs").
    batch_size
        Mini-batch size of both stages.
    use_labels
        Fit SCANVI on the labels and sample per label (True), or fit SCVI only and sample unconditionally.
    seed
        Sets `scvi.settings.seed` for training and seeds the sampling.
    device
        "cpu", "cuda" or "auto"; training runs on that device, sampling on the CPU.
    """

    name = "scvi"
    description = "scvi-tools SCVI / SCANVI, sampled from the (label-conditioned) prior with empirical library sizes"
    conditional = True
    requires = ("scvi",)
    extra = "scvi"
    weight_modules = ("module_",)

    def __init__(
        self,
        *,
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        gene_likelihood: str = "zinb",
        max_epochs: int | None = None,
        kl_warmup_epochs: int | None = None,
        scanvi_epochs: int | None = None,
        batch_size: int = 128,
        use_labels: bool = True,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(seed=seed, device=device)
        if gene_likelihood not in LIKELIHOODS:
            raise ScldbenchError(
                f"scvi: gene_likelihood must be one of {', '.join(LIKELIHOODS)}, got {gene_likelihood!r}"
            )
        for key, value in (("max_epochs", max_epochs), ("scanvi_epochs", scanvi_epochs),
                           ("kl_warmup_epochs", kl_warmup_epochs)):
            if value is not None and (int(value) != value or value < 1):
                raise ScldbenchError(f"scvi: {key} must be a positive whole number or unset, got {value!r}")
        self.n_latent = int(n_latent)
        self.n_hidden = int(n_hidden)
        self.n_layers = int(n_layers)
        self.dropout_rate = float(dropout_rate)
        self.gene_likelihood = gene_likelihood
        self.max_epochs = None if max_epochs is None else int(max_epochs)
        self.kl_warmup_epochs = None if kl_warmup_epochs is None else int(kl_warmup_epochs)
        self.scanvi_epochs = None if scanvi_epochs is None else int(scanvi_epochs)
        self.batch_size = int(batch_size)
        self.use_labels = bool(use_labels)
        self.conditional = self.use_labels
        self.module_: torch.nn.Module | None = None
        self.module_kwargs_: dict[str, Any] = {}
        self.label_codes_: dict[str, int] = {}
        self.library_: LibraryPrior | None = None
        self.history_: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ fit
    def _module_kwargs(self, n_genes: int, n_batch: int, n_labels: int) -> dict[str, Any]:
        """What the module is built from: enough to rebuild it for `load` without the training data."""
        return {
            "n_input": n_genes, "n_batch": n_batch, "n_labels": n_labels,
            "n_hidden": self.n_hidden, "n_latent": self.n_latent, "n_layers": self.n_layers,
            "dropout_rate": self.dropout_rate, "dispersion": "gene", "gene_likelihood": self.gene_likelihood,
            "use_observed_lib_size": True,
        }

    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        import scvi
        from scvi.model._utils import get_max_epochs_heuristic

        # one label leaves scANVI nothing to classify (and its classifier's metrics refuse one class): SCVI alone,
        # whose prior is then the label's
        labelled = self.use_labels and labels is not None and np.unique(labels).size > 1
        x = sp.csr_matrix(adata.X, dtype=np.float32)
        obs = pd.DataFrame(index=adata.obs_names.copy())
        if labelled:
            obs[_LABELS] = pd.Categorical(labels)
        train = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))
        # LibraryPrior sums each row: a one-column matrix of library sizes keeps them as they are
        self.library_ = LibraryPrior(library_sizes(x)[:, None], labels)
        with quiet_scvi():
            scvi.settings.seed = self.seed
            scvi.model.SCVI.setup_anndata(train, labels_key=_LABELS if labelled else None)
            model = scvi.model.SCVI(train, n_hidden=self.n_hidden, n_latent=self.n_latent, n_layers=self.n_layers,
                                    dropout_rate=self.dropout_rate, gene_likelihood=self.gene_likelihood)
            epochs = self.max_epochs or get_max_epochs_heuristic(train.n_obs)
            warmup = self.kl_warmup_epochs if self.kl_warmup_epochs is not None else max(1, epochs // 2)
            model.train(**_trainer_settings(epochs, self.batch_size, self.device, min(warmup, epochs)))
            self.history_ = _losses(model)
            if labelled:
                model = scvi.model.SCANVI.from_scvi_model(model, unlabeled_category=_UNLABELLED)
                # the SCVI stage has warmed up already: scANVI's prior terms are fitted at full KL weight
                model.train(**_trainer_settings(self.scanvi_epochs or epochs, self.batch_size, self.device, None))
                self.history_ |= {f"scanvi_{k}": v for k, v in _losses(model).items()}
                mapping = model.adata_manager.get_state_registry("labels").categorical_mapping
                self.label_codes_ = {str(lab): i for i, lab in enumerate(mapping) if lab != _UNLABELLED}
            else:
                self.label_codes_ = {}
        self.module_kwargs_ = self._module_kwargs(adata.n_vars, model.summary_stats.n_batch, model.module.n_labels)
        self.module_ = model.module.to("cpu").eval()

    # ------------------------------------------------------------------ sample
    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        labelled = bool(self.label_codes_)
        with_labels = self.conditional and bool(self.label_categories)  # also with one label, on SCVI's prior
        chosen = labels if labels is not None else (self.proportional_labels(n_cells) if with_labels else None)
        log_library = np.log(self.library_.draw(chosen if labelled else None, n_cells, self._rng))
        codes = np.array([self.label_codes_[str(lab)] for lab in chosen]) if labelled else np.zeros(n_cells)
        module = self.module_.eval()

        def chunk(start: int, stop: int) -> torch.Tensor:
            n = stop - start
            y = torch.as_tensor(codes[start:stop], dtype=torch.long).unsqueeze(1)
            if labelled:
                z2 = torch.randn(n, self.n_latent)
                mean, var = module.decoder_z1_z2(z2, y)
                z = mean + var.sqrt() * torch.randn_like(mean)
            else:
                z = torch.randn(n, self.n_latent)
            library = torch.as_tensor(log_library[start:stop], dtype=torch.float32).unsqueeze(1)
            out = module.generative(z=z, library=library, batch_index=torch.zeros(n, 1, dtype=torch.long), y=y)
            return out["px"].sample()

        with quiet_scvi():
            counts = torch.cat(in_chunks(chunk, n_cells)).numpy()
        return (counts, chosen) if chosen is not None else counts

    # ------------------------------------------------------------------ persistence
    def _build_module(self, name: str) -> torch.nn.Module:
        """The scvi-tools module of the fitted shape (`module_kwargs_`), on the CPU where sampling runs."""
        from scvi.module import SCANVAE, VAE

        kwargs = dict(self.module_kwargs_)
        return SCANVAE(**kwargs) if self.label_codes_ else VAE(**kwargs)


def _losses(model: Any) -> dict[str, list[float]]:
    """The per-epoch training losses scvi-tools recorded, as plain floats."""
    history = getattr(model, "history", None) or {}
    out = {}
    for key in ("elbo_train", "reconstruction_loss_train", "train_loss_epoch"):
        if key in history:
            out[key] = [float(v) for v in np.asarray(history[key]).ravel()]
    return out
