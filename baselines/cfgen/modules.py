"""CFGen's networks: a count autoencoder with a negative-binomial decoder, and the latent velocity field."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from scldbench.baselines._torch_common import mlp
from scldbench.counts.torch import log_normalise, nb_log_prob_from_logs
from scldbench.scld.denoiser import ResBlock, timestep_embedding

# t in [0, 1] is spread over the sinusoidal embedding's range as a diffusion step index would be
_TIME_SCALE = 1000.0


class CountAutoencoder(nn.Module):
    """log1p(normalised counts) -> latent -> gene proportions; mean = proportions x library size, NB noise.

    The encoder and decoder mirror each other through `hidden` (batch norm and ReLU after every hidden layer);
    the latent layer is linear. One inverse dispersion per gene is learned with the weights.
    """

    def __init__(self, n_genes: int, hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.encoder = mlp([n_genes, *hidden, latent_dim], batch_norm=True)
        self.decoder = mlp([latent_dim, *reversed(hidden)], batch_norm=True, last_activation=True)
        self.to_logits = nn.Linear(hidden[0], n_genes)
        self.log_theta = nn.Parameter(torch.full((n_genes,), math.log(10.0)))

    def encode(self, counts: torch.Tensor) -> torch.Tensor:
        return self.encoder(log_normalise(counts))

    def log_proportions(self, z: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.to_logits(self.decoder(z)), dim=1)

    def proportions(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_proportions(z).exp()

    def loss(self, counts: torch.Tensor, cluster: torch.Tensor | None = None) -> torch.Tensor:
        """NB negative log-likelihood per cell (summed over genes), averaged over the batch.

        `cluster` is unused: the signature is the one SCLD's autoencoder training loop calls.
        """
        log_lib = torch.log(counts.sum(dim=1, keepdim=True).clamp(min=1.0))
        log_mu = self.log_proportions(self.encode(counts)) + log_lib
        return -nb_log_prob_from_logs(counts, log_mu, self.log_theta).sum(dim=1).mean()


class VelocityField(nn.Module):
    """v(z, t | label, log size factor): residual MLP blocks, each told the summed condition embedding.

    Label index `n_classes` is the null token classifier-free guidance trains and samples with.
    """

    def __init__(
        self,
        latent_dim: int,
        n_classes: int,
        *,
        hidden: int,
        n_blocks: int,
        embedding_dim: int,
        dropout: float,
        condition_on_size: bool,
    ) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.embedding_dim = embedding_dim
        self.condition_on_size = condition_on_size
        self.time = nn.Sequential(nn.Linear(embedding_dim, embedding_dim), nn.SiLU(),
                                  nn.Linear(embedding_dim, embedding_dim))
        self.label = nn.Embedding(n_classes + 1, embedding_dim)
        self.size = nn.Sequential(nn.Linear(1, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim))
        self.inp = nn.Linear(latent_dim, hidden)
        self.blocks = nn.ModuleList(ResBlock(hidden, hidden, embedding_dim, dropout) for _ in range(n_blocks))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, latent_dim)

    @property
    def null_index(self) -> int:
        return self.n_classes

    def forward(self, z: torch.Tensor, t: torch.Tensor, label: torch.Tensor, log_size: torch.Tensor) -> torch.Tensor:
        cond = self.time(timestep_embedding(t * _TIME_SCALE, self.embedding_dim)) + self.label(label)
        if self.condition_on_size:
            cond = cond + self.size(log_size.reshape(-1, 1).to(z.dtype))
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, cond)
        return self.out(nn.functional.silu(self.out_norm(h)))
