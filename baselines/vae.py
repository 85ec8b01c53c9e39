"""A count VAE in the scVI style (Lopez et al. 2018): negative-binomial likelihood, library size modelled.

Written from the published description, not from scvi-tools. The encoder sees log1p counts (and the cluster
one-hot when conditional); the decoder maps the latent (and the one-hot) to gene proportions through a
softmax; the NB mean is proportions x library size, with one inverse dispersion per gene. Training uses each
cell's observed library size; generation draws z from the prior and the library size from a log-normal fitted
to the training cells (per cluster when conditional), then NB counts. The test set is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scldbench.baselines._torch_common import (
    LibraryPrior,
    batch_size_for,
    check_sizes,
    dense_counts,
    encode_labels,
    epoch_batches,
    in_chunks,
    mlp,
)
from scldbench.counts.numpy import moment_log_theta
from scldbench.counts.torch import nb_log_prob, sample_nb
from scldbench.errors import ScldbenchError
from scldbench.generator import Generator
from scldbench.optim import adam

DISPERSIONS = ("gene", "gene-cluster")


class CountVAEModule(nn.Module):
    def __init__(self, n_genes: int, n_classes: int, hidden: Sequence[int], latent: int, dropout: float,
                 per_class_dispersion: bool) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.encoder = mlp([n_genes + n_classes, *hidden], batch_norm=True, dropout=dropout, last_activation=True)
        self.to_latent = nn.Linear(hidden[-1], 2 * latent)
        self.decoder = mlp([latent + n_classes, *reversed(hidden)], batch_norm=True, last_activation=True)
        self.to_proportions = nn.Linear(hidden[0], n_genes)
        self.log_theta = nn.Parameter(torch.zeros(n_classes if per_class_dispersion and n_classes else 1, n_genes))

    def theta(self, y: torch.Tensor | None) -> torch.Tensor:
        """Inverse dispersion per cell and gene: one row per cluster, or one shared row."""
        rows = y if y is not None and self.log_theta.shape[0] > 1 else torch.zeros(1, dtype=torch.long,
                                                                                  device=self.log_theta.device)
        return self.log_theta[rows].exp()

    def _with_class(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if not self.n_classes:
            return h
        return torch.cat([h, F.one_hot(y, self.n_classes).to(h.dtype)], dim=1)

    def encode(self, counts: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_latent(self.encoder(self._with_class(torch.log1p(counts), y))).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def proportions(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return torch.softmax(self.to_proportions(self.decoder(self._with_class(z, y))), dim=1)

    def loss(self, counts: torch.Tensor, y: torch.Tensor | None, kl_weight: float) -> torch.Tensor:
        mu, logvar = self.encode(counts, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        mean = self.proportions(z, y) * counts.sum(dim=1, keepdim=True)
        recon = -nb_log_prob(counts, mean, self.theta(y)).sum(dim=1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return (recon + kl_weight * kl).mean()


class CountVAE(Generator):
    """scVI-style count VAE: NB likelihood, per-gene dispersion, log-normal library prior per cluster.

    Defaults follow scVI's (one hidden layer of 128 with batch norm and dropout 0.1, 10-d latent, Adam
    lr 1e-3, batch 128, 400 epochs for small data, KL warm-up); they take seconds on 420 x 765 cells on a
    CPU and are also the "paper-scale" setting (scVI uses the same network on large data with fewer epochs).
    `conditional=True` feeds the cluster one-hot to encoder and decoder and fits the library prior per
    cluster; `conditional=False` is unconditional (library prior from all training cells) and cannot be
    asked for clusters. `dispersion`: "gene-cluster" (default, scVI's "gene-label": one inverse dispersion
    per gene and cluster) or "gene"; either starts from method-of-moments estimates.
    Generation: z ~ N(0, I), library ~ log-normal, counts ~ NB(proportions x library, theta);
    posterior-predictive sampling of real cells is never used.
    """

    name = "vae"
    description = "count VAE in the scVI style (NB likelihood, library size modelled, optional cluster conditioning)"
    conditional = True
    weight_modules = ("module_",)

    def __init__(
        self,
        *,
        conditional: bool = True,
        epochs: int = 400,
        kl_warmup_epochs: int = 100,
        latent_dim: int = 10,
        hidden_layers: Sequence[int] = (128,),
        dropout: float = 0.1,
        dispersion: str = "gene-cluster",
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(seed=seed, device=device)
        self.conditional = bool(conditional)
        self.epochs = int(epochs)
        self.kl_warmup_epochs = int(kl_warmup_epochs)
        self.latent_dim = int(latent_dim)
        self.hidden_layers = check_sizes("hidden_layers", hidden_layers)
        self.dropout = float(dropout)
        if dispersion not in DISPERSIONS:
            raise ScldbenchError(f"dispersion must be one of {', '.join(DISPERSIONS)}, got {dispersion!r}")
        self.dispersion = dispersion
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)

    # ------------------------------------------------------------------ fit
    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        counts = dense_counts(adata.X)
        dev = self.device
        use_labels = self.conditional and labels is not None
        y = encode_labels(labels, self.label_categories, dev) if use_labels else None
        self.library_ = LibraryPrior(counts, labels if use_labels else None)
        self.module_ = self._build_module("module_")
        groups = y.cpu().numpy() if y is not None else None
        with torch.no_grad():
            init = moment_log_theta(counts, groups, self.module_.log_theta.shape[0])
            self.module_.log_theta.copy_(torch.as_tensor(init, device=dev))
        self.history_ = self._train(torch.as_tensor(counts, device=dev), y)

    def _build_module(self, name: str) -> nn.Module:
        # conditioned on the clusters when asked to and fitted with labels (there are label categories then)
        n_classes = len(self.label_categories) if self.conditional else 0
        return CountVAEModule(self.n_genes, n_classes, self.hidden_layers, self.latent_dim, self.dropout,
                              self.dispersion == "gene-cluster").to(self.device)

    def _train(self, counts: torch.Tensor, y: torch.Tensor | None) -> list[tuple[int, float]]:
        opt = adam(self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        bs = batch_size_for(counts.shape[0], self.batch_size)
        history: list[tuple[int, float]] = []
        self.module_.train()
        for epoch in range(self.epochs):
            kl_weight = min(1.0, (epoch + 1) / self.kl_warmup_epochs) if self.kl_warmup_epochs > 0 else 1.0
            total, n = 0.0, 0
            for idx in epoch_batches(counts.shape[0], bs, counts.device):
                loss = self.module_.loss(counts[idx], None if y is None else y[idx], kl_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, n = total + loss.item() * idx.numel(), n + idx.numel()
            history.append((epoch, total / max(n, 1)))
        return history

    # ------------------------------------------------------------------ sample
    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        conditioned = self.module_.n_classes > 0
        chosen = labels if labels is not None else (self.proportional_labels(n_cells) if conditioned else None)
        libraries = torch.as_tensor(
            self.library_.draw(chosen if conditioned else None, n_cells, self._rng, kind="lognormal"),
            dtype=torch.float32, device=self.device,
        )
        y_all = encode_labels(chosen, self.label_categories, self.device) if conditioned else None
        self.module_.eval()

        def chunk(start: int, stop: int) -> torch.Tensor:
            z = torch.randn(stop - start, self.latent_dim, device=self.device)
            y = None if y_all is None else y_all[start:stop]
            mean = self.module_.proportions(z, y) * libraries[start:stop, None]
            return sample_nb(mean, self.module_.theta(y)).cpu()

        counts = torch.cat(in_chunks(chunk, n_cells)).numpy()
        return (counts, chosen) if chosen is not None else counts
