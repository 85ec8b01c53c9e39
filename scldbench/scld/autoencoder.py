"""The autoencoder: two linear layers each side with an activation after each, and its count likelihoods.

Input is log1p of counts normalised to 1e4 per cell (raw counts span four orders of magnitude and do not suit
a small MLP). The decoder's last activation gives the per-cell expression profile: softmax proportions for the
count likelihoods (`poisson`, `nb`: the cell's mean is proportions x library size), or softplus log1p values
for the paper's `mse`.

With `anchors` (log mean expression per cluster), the decoder's logits are offsets from the anchor of each
cell's cluster, and start at zero: the cluster's mean profile is what the decoder returns before training, and
the latent only has to carry how a cell differs from its cluster.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

NORM_TARGET = 1e4


def activation(name: str) -> nn.Module:
    table: dict[str, type[nn.Module]] = {
        "relu": nn.ReLU,
        "elu": nn.ELU,
        "silu": nn.SiLU,
        "gelu": nn.GELU,
        "tanh": nn.Tanh,
        "leaky_relu": nn.LeakyReLU,
        "softplus": nn.Softplus,
        "identity": nn.Identity,
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; use one of {', '.join(table)}")
    return table[name]()


def normalise(counts: torch.Tensor) -> torch.Tensor:
    """Counts scaled to NORM_TARGET per cell."""
    return counts / counts.sum(dim=1, keepdim=True).clamp(min=1.0) * NORM_TARGET


def log_normalise(counts: torch.Tensor) -> torch.Tensor:
    return torch.log1p(normalise(counts))


class Autoencoder(nn.Module):
    def __init__(
        self,
        n_genes: int,
        hidden: int,
        latent_dim: int,
        loss: str,
        act: str = "relu",
        latent_act: str = "tanh",
        anchors: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.loss_kind = loss
        self.encoder = nn.Sequential(
            nn.Linear(n_genes, hidden), activation(act), nn.Linear(hidden, latent_dim), activation(latent_act)
        )
        self.decoder_hidden = nn.Sequential(nn.Linear(latent_dim, hidden), activation(act))
        self.decoder_out = nn.Linear(hidden, n_genes)
        # per-gene inverse dispersion of the negative binomial (log theta); unused by the other losses
        self.log_theta = nn.Parameter(torch.full((n_genes,), math.log(10.0)), requires_grad=loss == "nb")
        if anchors is not None and loss == "mse":
            raise ValueError("anchored decoding needs a softmax decoder (loss 'poisson' or 'nb')")
        self.register_buffer("anchors", torch.zeros(0, n_genes) if anchors is None else anchors.float())
        if anchors is not None:
            nn.init.zeros_(self.decoder_out.weight)
            nn.init.zeros_(self.decoder_out.bias)

    def encode(self, counts: torch.Tensor) -> torch.Tensor:
        return self.encoder(log_normalise(counts))

    @property
    def anchored(self) -> bool:
        return self.anchors.numel() > 0

    def decode_logits(self, z: torch.Tensor, cluster: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.decoder_out(self.decoder_hidden(z))
        if self.anchored:
            if cluster is None:
                raise ValueError("an anchored decoder needs each cell's cluster")
            logits = logits.float() + self.anchors[cluster]
        return logits

    def profile(self, z: torch.Tensor, cluster: torch.Tensor | None = None) -> torch.Tensor:
        """Per-cell expression proportions (rows sum to one), whichever loss trained the decoder."""
        logits = self.decode_logits(z, cluster).float()
        if self.loss_kind == "mse":
            values = torch.expm1(F.softplus(logits))
            return values / values.sum(dim=1, keepdim=True).clamp(min=1e-12)
        return torch.softmax(logits, dim=1)

    def loss(self, counts: torch.Tensor, cluster: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.decode_logits(self.encode(counts), cluster).float()
        if self.loss_kind == "mse":
            return F.mse_loss(F.softplus(logits), log_normalise(counts))
        lib = counts.sum(dim=1, keepdim=True)
        log_p = torch.log_softmax(logits, dim=1)
        # per-count normalisation keeps the loss scale independent of sequencing depth
        if self.loss_kind == "poisson":
            return -(counts * log_p).sum() / lib.sum().clamp(min=1.0)
        return nb_nll(counts, log_p + torch.log(lib.clamp(min=1.0)), self.log_theta).sum() / lib.sum().clamp(min=1.0)


def log_profiles(sums: torch.Tensor, pseudo_count: float = 1e-2) -> torch.Tensor:
    """Log expression proportions per row of summed counts (clusters x genes); `pseudo_count` per gene keeps
    genes never seen in a cluster finite without moving measurable mass onto them."""
    sums = sums.double() + pseudo_count
    return (sums / sums.sum(dim=1, keepdim=True)).log().float()


def nb_nll(x: torch.Tensor, log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of counts x under NB(mean exp(log_mu), inverse dispersion exp(log_theta))."""
    theta = log_theta.exp()
    log_theta_mu = torch.logaddexp(log_theta, log_mu)
    ll = (
        theta * (log_theta - log_theta_mu)
        + x * (log_mu - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )
    return -ll
