"""ACTIVA (Heydari et al. 2022): an introspective VAE for scRNA-seq with a cell-type classifier.

Written from the published description (ACTIVA and IntroVAE, Huang et al. 2018). Cells are scaled as for
scGAN (normalised to 20,000, log1p). The encoder (genes -> 1024-512-256 -> 128-d Gaussian, batch norm after
every hidden layer, as in the published networks) doubles as the
adversary: it is trained to keep the KL of real cells small and to push the KL of reconstructed and of
prior-sampled cells above a margin m, while the decoder (128 -> 256-512-1024 -> genes, ReLU output) is
trained to reconstruct and to make its cells' KL small. A classifier (genes -> 100-50-25-K, ACTINN-like) is
trained on the real labelled cells; it labels generated cells, which is how ACTIVA generates per cell type.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scldbench.baselines._torch_common import (
    SCGAN_TOTAL,
    LibraryPrior,
    batch_size_for,
    check_count_mode,
    check_sizes,
    dense_counts,
    encode_labels,
    epoch_batches,
    in_chunks,
    mlp,
    scale_counts,
    to_counts,
    unscale,
)
from scldbench.errors import ScldbenchError
from scldbench.generator import Generator
from scldbench.optim import adam


class GaussianEncoder(nn.Module):
    def __init__(self, n_genes: int, hidden: Sequence[int], latent: int) -> None:
        super().__init__()
        self.body = mlp([n_genes, *hidden], activation=nn.LeakyReLU, batch_norm=True, last_activation=True)
        self.head = nn.Linear(hidden[-1], 2 * latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.body(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per cell."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


class Activa(Generator):
    """ACTIVA: introspective VAE plus cell-type classifier; per-cluster cells by classifier assignment.

    Losses per batch (IntroVAE): encoder  KL(x) + alpha * sum_s [m - KL(x_s)]^+ + beta * AE,
    decoder  alpha * sum_s KL(x_s) + beta * AE (+ `type_weight` * cross entropy of the classifier on the
    reconstruction against the cell's label), s over reconstructions and prior samples, AE = 0.5 * squared
    error summed over genes. The first `warmup_epochs` train a plain VAE (KL + beta * AE), as IntroVAE does
    before the adversarial terms start. alpha=0.25, beta=0.5, m=110 are IntroVAE-style values chosen here.

    The decoder's output layer starts at the mean scaled training cell: from zero, a ReLU output on log1p values
    up to ~9 needs thousands of Adam steps to reach the data's scale, and meanwhile the KL term wins (the
    warm-up VAE collapsed onto one average cell; docs/decisions/baselines-at-their-best.md).

    Default configuration (CPU): the paper's layer sizes and 128-d latent, Adam, batch 32, lr 1e-3,
    `epochs=60` (10 of them warm-up). Paper scale (suites/pbmc-paper.toml): batch 128, lr 2e-4, 600 epochs,
    margin 110, on a GPU.

    Sampling: z ~ N(0, I), decode, classify. With labels, cells are drawn in rounds of `draw_batch` and kept
    when the classifier assigns them to a requested cluster; after `max_draw_rounds` rounds a cluster that is
    still short takes the cells of the last round most probable for it (counted in `self.fallback_cells_`).
    Counts: profile normalised, scaled to a library size drawn from the training cells of the assigned
    cluster, then `count_sampling` ("poisson" by default: the decoder's output is a smooth mean-like profile;
    "round" or "none" also possible). `log_scale=False` trains on normalised values without the log.
    """

    name = "activa"
    description = "ACTIVA: introspective VAE with a cell-type classifier (Heydari et al. 2022)"
    conditional = True
    weight_modules = ("classifier_", "encoder_", "decoder_")

    def __init__(
        self,
        *,
        epochs: int = 60,
        warmup_epochs: int = 10,
        latent_dim: int = 128,
        encoder_layers: Sequence[int] = (1024, 512, 256),
        classifier_layers: Sequence[int] = (100, 50, 25),
        batch_size: int = 32,
        lr: float = 1e-3,
        alpha: float = 0.25,
        beta: float = 0.5,
        margin: float = 110.0,
        type_weight: float = 1.0,
        classifier_epochs: int = 50,
        classifier_lr: float = 1e-3,
        draw_batch: int = 512,
        max_draw_rounds: int = 50,
        total: float = SCGAN_TOTAL,
        log_scale: bool = True,
        count_sampling: str = "poisson",
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(seed=seed, device=device)
        self.epochs = int(epochs)
        self.warmup_epochs = int(warmup_epochs)
        self.latent_dim = int(latent_dim)
        self.encoder_layers = check_sizes("encoder_layers", encoder_layers)
        self.classifier_layers = check_sizes("classifier_layers", classifier_layers)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.margin = float(margin)
        self.type_weight = float(type_weight)
        self.classifier_epochs = int(classifier_epochs)
        self.classifier_lr = float(classifier_lr)
        self.draw_batch = int(draw_batch)
        self.max_draw_rounds = int(max_draw_rounds)
        if self.max_draw_rounds < 1:
            raise ScldbenchError(f"max_draw_rounds must be at least 1, got {max_draw_rounds}")
        self.total = float(total)
        self.log_scale = bool(log_scale)
        self.count_sampling = check_count_mode(count_sampling)
        self.fallback_cells_ = 0

    # ------------------------------------------------------------------ fit
    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        counts = dense_counts(adata.X)
        dev = self.device
        data = torch.as_tensor(scale_counts(counts, self.total, self.log_scale), device=dev)
        y = encode_labels(labels, self.label_categories, dev) if labels is not None else None
        self.library_ = LibraryPrior(counts, labels)
        self.classifier_ = None
        if y is not None:
            self.classifier_ = self._build_module("classifier_")
            self._train_classifier(data, y)
        self.encoder_ = self._build_module("encoder_")
        self.decoder_ = self._build_module("decoder_")
        with torch.no_grad():
            self.decoder_[-2].bias.copy_(data.mean(dim=0))
        self.history_ = self._train_introvae(data, y)

    def _build_module(self, name: str) -> nn.Module:
        if name == "classifier_":
            module = mlp([self.n_genes, *self.classifier_layers, len(self.label_categories)])
        elif name == "encoder_":
            module = GaussianEncoder(self.n_genes, self.encoder_layers, self.latent_dim)
        else:
            module = mlp([self.latent_dim, *reversed(self.encoder_layers), self.n_genes], activation=nn.LeakyReLU,
                         batch_norm=True, last_activation=False).append(nn.ReLU())
        return module.to(self.device)

    def _train_classifier(self, data: torch.Tensor, y: torch.Tensor) -> None:
        assert self.classifier_ is not None
        opt = adam(self.classifier_.parameters(), lr=self.classifier_lr, weight_decay=1e-4)
        self.classifier_.train()
        for _ in range(self.classifier_epochs):
            for idx in epoch_batches(data.shape[0], batch_size_for(data.shape[0], self.batch_size), data.device):
                loss = F.cross_entropy(self.classifier_(data[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.classifier_.eval()
        self.classifier_.requires_grad_(False)

    def _train_introvae(self, data: torch.Tensor, y: torch.Tensor | None) -> list[tuple[int, float, float]]:
        opt_e = adam(self.encoder_.parameters(), lr=self.lr)
        opt_d = adam(self.decoder_.parameters(), lr=self.lr)
        history: list[tuple[int, float, float]] = []
        bs = batch_size_for(data.shape[0], self.batch_size)
        for epoch in range(self.epochs):
            adversarial = epoch >= self.warmup_epochs
            for idx in epoch_batches(data.shape[0], bs, data.device):
                loss_e, loss_d = self._introvae_step(data[idx], None if y is None else y[idx], adversarial,
                                                     opt_e, opt_d)
            history.append((epoch, loss_e, loss_d))
        return history

    def _introvae_step(self, x: torch.Tensor, y: torch.Tensor | None, adversarial: bool,
                       opt_e: torch.optim.Optimizer, opt_d: torch.optim.Optimizer) -> tuple[float, float]:
        enc, dec = self.encoder_, self.decoder_
        mu, logvar = enc(x)
        z = reparameterise(mu, logvar)
        z_prior = torch.randn_like(z)
        recon = dec(z)
        ae = 0.5 * (recon - x).pow(2).sum(dim=1).mean()
        loss_e = kl_normal(mu, logvar).mean() + self.beta * ae
        if adversarial:
            for fake in (recon.detach(), dec(z_prior).detach()):
                loss_e = loss_e + self.alpha * F.relu(self.margin - kl_normal(*enc(fake))).mean()
        opt_e.zero_grad(set_to_none=True)
        loss_e.backward(inputs=list(enc.parameters()))
        opt_e.step()

        recon = dec(z.detach())
        loss_d = self.beta * 0.5 * (recon - x).pow(2).sum(dim=1).mean()
        if adversarial:
            for fake in (recon, dec(z_prior)):
                loss_d = loss_d + self.alpha * kl_normal(*enc(fake)).mean()
        if self.classifier_ is not None and y is not None and self.type_weight > 0:
            loss_d = loss_d + self.type_weight * F.cross_entropy(self.classifier_(recon), y)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward(inputs=list(dec.parameters()))
        opt_d.step()
        return loss_e.item(), loss_d.item()

    # ------------------------------------------------------------------ sample
    @torch.no_grad()
    def _draw(self, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """n decoded prior samples (log scale) and, with a classifier, each cell's class probabilities."""
        self.decoder_.eval()

        def chunk(start: int, stop: int) -> torch.Tensor:
            return self.decoder_(torch.randn(stop - start, self.latent_dim, device=self.device))

        x = torch.cat(in_chunks(chunk, n))
        probs = None if self.classifier_ is None else torch.softmax(self.classifier_(x), dim=1).cpu().numpy()
        return x.cpu().numpy(), probs

    def _by_assignment(self, labels: np.ndarray) -> np.ndarray:
        """Generate until every requested cluster has its cells, as judged by the classifier."""
        need = {lab: int((labels == lab).sum()) for lab in np.unique(labels)}
        kept: dict[str, list[np.ndarray]] = {lab: [] for lab in need}
        cats = np.asarray(self.label_categories)
        self.fallback_cells_ = 0
        for round_ in range(self.max_draw_rounds):
            x, probs = self._draw(max(self.draw_batch, 2 * sum(need.values())))
            assigned = cats[probs.argmax(axis=1)]
            last = round_ == self.max_draw_rounds - 1
            for lab in need:
                if need[lab] == 0:
                    continue
                rows = np.flatnonzero(assigned == lab)[: need[lab]]
                if last and rows.size < need[lab]:
                    # the classifier rarely assigns this cluster: take the cells most probable for it
                    col = self.label_categories.index(lab)
                    extra = np.setdiff1d(np.argsort(-probs[:, col]), rows)[: need[lab] - rows.size]
                    self.fallback_cells_ += extra.size
                    rows = np.concatenate([rows, extra])
                kept[lab].append(x[rows])
                need[lab] -= rows.size
            if not any(need.values()):
                break
        out = np.empty((labels.size, self.n_genes), dtype=np.float32)
        for lab, parts in kept.items():
            out[labels == lab] = np.concatenate(parts)
        return out

    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        if labels is not None:
            logged, assigned = self._by_assignment(labels), labels
        else:
            logged, probs = self._draw(n_cells)
            assigned = None if probs is None else np.asarray(self.label_categories)[probs.argmax(axis=1)]
        profiles = unscale(torch.as_tensor(logged), self.log_scale).numpy()
        libraries = self.library_.draw(assigned, n_cells, self._rng)
        counts = to_counts(profiles, libraries, self.count_sampling, self._rng)
        return (counts, assigned) if assigned is not None else counts
