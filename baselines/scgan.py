"""scGAN and cscGAN (Marouf et al. 2020, Nat Commun): Wasserstein GANs with gradient penalty for scRNA-seq.

Written from the published description. Cells are normalised to a fixed total (20,000), as the paper does
(no log: `log_scale=True` adds log1p for real and generated cells alike); the
generator (noise -> 256-512-1024 -> genes) ends in a ReLU and a library-size normalisation (LSN) layer that
scales every generated cell to the same fixed total, so real and generated cells reach the critic
(genes -> 1024-512-256 -> 1) on the same scale. cscGAN conditions the generator through conditional batch
norm and scores with a projection critic.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import torch
from torch import nn

from scldbench.baselines._torch_common import (
    SCGAN_TOTAL,
    LibraryPrior,
    batch_size_for,
    check_count_mode,
    check_sizes,
    dense_counts,
    encode_labels,
    endless_batches,
    exponential_decay,
    in_chunks,
    mlp,
    scale_counts,
    to_counts,
    unscale,
)
from scldbench.counts.torch import normalise_total
from scldbench.generator import Generator
from scldbench.optim import adam


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose scale and shift are looked up per class (identity scale, zero shift at start)."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n_features, affine=False)
        self.scale = nn.Embedding(n_classes, n_features)
        self.shift = nn.Embedding(n_classes, n_features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * self.scale(y) + self.shift(y)


class GanGenerator(nn.Module):
    """noise -> hidden layers (linear, [conditional] batch norm, ReLU) -> genes -> ReLU -> LSN [-> log1p]."""

    def __init__(self, latent: int, hidden: Sequence[int], n_genes: int, n_classes: int, total: float,
                 log: bool) -> None:
        super().__init__()
        sizes = [latent, *hidden]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.norms = nn.ModuleList(
            ConditionalBatchNorm(b, n_classes) if n_classes else nn.BatchNorm1d(b) for b in sizes[1:]
        )
        self.out = nn.Linear(sizes[-1], n_genes)
        self.n_classes, self.total, self.log = n_classes, total, log

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = z
        for linear, norm in zip(self.linears, self.norms, strict=True):
            h = linear(h)
            h = norm(h, y) if self.n_classes else norm(h)
            h = torch.relu(h)
        x = normalise_total(torch.relu(self.out(h)), self.total, eps=1e-8)
        return torch.log1p(x) if self.log else x


class Critic(nn.Module):
    """genes -> hidden layers (linear, ReLU) -> score; with classes, a projection term <embed(y), features>."""

    def __init__(self, n_genes: int, hidden: Sequence[int], n_classes: int) -> None:
        super().__init__()
        self.body = mlp([n_genes, *hidden], last_activation=True)
        self.head = nn.Linear(hidden[-1], 1)
        self.embed = nn.Embedding(n_classes, hidden[-1]) if n_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)
        score = self.head(h).squeeze(1)
        if self.embed is not None and y is not None:
            score = score + (self.embed(y) * h).sum(dim=1)
        return score


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """(||grad critic(x_hat)|| - 1)^2 on random interpolates of real and generated cells (WGAN-GP)."""
    eps = torch.rand(real.shape[0], 1, device=real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed, y).sum(), mixed, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


class ScGAN(Generator):
    """scGAN: WGAN-GP on library-size-normalised cells (Marouf et al. 2020).

    Fixed as published: 5 critic steps per generator step, gradient penalty 10, AMSGrad (beta1 0.5,
    beta2 0.9), lr decayed x0.95 every 1,000 steps, LSN to a total of 20,000, ReLU generator output.

    Default configuration (CPU, about a minute on 420 x 765 cells on 2 shared cores): the same
    architecture a quarter as wide (generator 64-128-256, critic 256-128-64), noise 128, batch 32,
    lr 5e-4, `steps=1200` generator steps. It is far from converged: expect a poor score.
    Paper scale: `generator_layers=[256, 512, 1024]`, `critic_layers=[1024, 512, 256]`, `batch_size=128`,
    `lr=1e-4` decayed to 1e-5 over the run (`lr_decay=0.1`, `lr_decay_steps=steps`), `steps=1_000_000` as the
    paper trains, on a GPU (suites/pbmc-paper.toml).

    Output: the generated profile (normalised to `total`) is scaled to a library size drawn from the
    training cells' library sizes (of the requested cluster, for cscGAN), then `count_sampling`: "poisson"
    (default: the generator's profiles are smooth and lack count noise; Poisson scored better than rounding
    in our runs), "round", or "none" (non-integer values).
    """

    name = "scgan"
    description = "scGAN: WGAN-GP with library-size normalisation layer (Marouf et al. 2020)"
    conditional = False
    weight_modules = ("generator_", "critic_")

    def __init__(
        self,
        *,
        steps: int = 1200,
        latent_dim: int = 128,
        generator_layers: Sequence[int] = (64, 128, 256),
        critic_layers: Sequence[int] = (256, 128, 64),
        batch_size: int = 32,
        critic_steps: int = 5,
        gp_weight: float = 10.0,
        lr: float = 5e-4,
        lr_decay: float = 0.95,
        lr_decay_steps: int = 1000,
        total: float = SCGAN_TOTAL,
        log_scale: bool = False,
        count_sampling: str = "poisson",
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(seed=seed, device=device)
        self.steps = int(steps)
        self.latent_dim = int(latent_dim)
        self.generator_layers = check_sizes("generator_layers", generator_layers)
        self.critic_layers = check_sizes("critic_layers", critic_layers)
        self.batch_size = int(batch_size)
        self.critic_steps = int(critic_steps)
        self.gp_weight = float(gp_weight)
        self.lr = float(lr)
        self.lr_decay = float(lr_decay)
        self.lr_decay_steps = int(lr_decay_steps)
        self.total = float(total)
        self.log_scale = bool(log_scale)
        self.count_sampling = check_count_mode(count_sampling)

    # ------------------------------------------------------------------ fit
    def _n_classes(self) -> int:
        return len(self.label_categories) if type(self).conditional else 0

    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        counts = dense_counts(adata.X)
        dev = self.device
        data = torch.as_tensor(scale_counts(counts, self.total, self.log_scale), device=dev)
        n_classes = self._n_classes()  # 0 without labels: no label categories then
        y_all = encode_labels(labels, self.label_categories, dev) if n_classes else None
        self.library_ = LibraryPrior(counts, labels if n_classes else None)
        self.generator_ = self._build_module("generator_")
        self.critic_ = self._build_module("critic_")
        self.history_ = self._train(data, y_all)

    def _build_module(self, name: str) -> nn.Module:
        if name == "generator_":
            module = GanGenerator(self.latent_dim, self.generator_layers, self.n_genes, self._n_classes(), self.total,
                                  self.log_scale)
        else:
            module = Critic(self.n_genes, self.critic_layers, self._n_classes())
        return module.to(self.device)

    def _optimiser(self, module: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        opt = adam(module.parameters(), lr=self.lr, betas=(0.5, 0.9), amsgrad=True)
        return opt, exponential_decay(opt, self.lr_decay, self.lr_decay_steps)

    def _train(self, data: torch.Tensor, y_all: torch.Tensor | None) -> list[tuple[int, float, float]]:
        opt_g, sched_g = self._optimiser(self.generator_)
        opt_c, sched_c = self._optimiser(self.critic_)
        batches = endless_batches(data.shape[0], batch_size_for(data.shape[0], self.batch_size), data.device)
        history: list[tuple[int, float, float]] = []
        self.generator_.train()
        self.critic_.train()
        for step in range(self.steps):
            for _ in range(self.critic_steps):
                idx = next(batches)
                y = y_all[idx] if y_all is not None else None
                loss_c = self._critic_loss(data[idx], y)
                opt_c.zero_grad(set_to_none=True)
                loss_c.backward()
                opt_c.step()
            sched_c.step()
            # the generator's cells take the cluster mix of a real batch
            idx = next(batches)
            y = y_all[idx] if y_all is not None else None
            loss_g = -self.critic_(self.generator_(self._noise(idx.numel()), y), y).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            sched_g.step()
            if step % 100 == 0 or step == self.steps - 1:
                history.append((step, loss_c.item(), loss_g.item()))
        return history

    def _critic_loss(self, real: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            fake = self.generator_(self._noise(real.shape[0]), y)
        wasserstein = self.critic_(fake, y).mean() - self.critic_(real, y).mean()
        return wasserstein + self.gp_weight * gradient_penalty(self.critic_, real, fake, y)

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.device)

    # ------------------------------------------------------------------ sample
    def _profiles(self, n_cells: int, labels: np.ndarray | None) -> np.ndarray:
        """Generated cells normalised to `total` (before library sizes and count sampling)."""
        self.generator_.eval()
        y_all = encode_labels(labels, self.label_categories, self.device) if labels is not None else None

        def chunk(start: int, stop: int) -> torch.Tensor:
            y = y_all[start:stop] if y_all is not None else None
            return unscale(self.generator_(self._noise(stop - start), y), self.log_scale).cpu()

        return torch.cat(in_chunks(chunk, n_cells)).numpy()

    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        profiles = self._profiles(n_cells, None)
        libraries = self.library_.draw(None, n_cells, self._rng)
        return to_counts(profiles, libraries, self.count_sampling, self._rng)


class CscGAN(ScGAN):
    """cscGAN: scGAN with conditional batch norm in the generator and a projection critic (per-cluster).

    Same parameters and defaults as `ScGAN`. Unconditional sampling draws clusters in the training
    proportions and returns them as the cells' labels; library sizes come from the requested cluster.
    """

    name = "cscgan"
    description = "cscGAN: conditional scGAN (conditional batch norm, projection critic)"
    conditional = True

    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        if not self.label_categories:
            return super()._sample(n_cells, labels, guidance)
        chosen = labels if labels is not None else self.proportional_labels(n_cells)
        profiles = self._profiles(n_cells, chosen)
        libraries = self.library_.draw(chosen, n_cells, self._rng)
        return to_counts(profiles, libraries, self.count_sampling, self._rng), chosen
