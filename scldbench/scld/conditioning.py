"""Pre-guidance: cluster / global mean expression through an MLP, fused with the denoiser's input.

`cat` (the paper's) concatenates the embedding to the noisy latent; `add` adds a projection of it to the
first hidden layer; `attention` lets the hidden state attend over the embedding split into tokens.
"""

from __future__ import annotations

import torch
from torch import nn


class ConditionEncoder(nn.Module):
    """Mean profiles (log-normalised, one row per condition) -> one embedding per condition.

    The first layer reads each profile through its coordinates in an orthonormal basis of the profiles' span
    (`coords = profiles @ basis`): the same functions of the profiles as a layer over every gene, with weights
    conditions x hidden instead of genes x hidden, so a training step no longer writes a gradient over every gene.
    The layer starts at the projection of a gene layer drawn as `nn.Linear(n_genes, hidden)`, so the initial
    embeddings are those of that layer.
    """

    def __init__(self, profiles: torch.Tensor, hidden: int, out_dim: int) -> None:
        super().__init__()
        basis, _ = torch.linalg.qr(profiles.double().t())  # genes x conditions, orthonormal columns
        self.register_buffer("coords", (profiles.double() @ basis).float())
        # drawn in the order of nn.Sequential(nn.Linear(n_genes, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))
        gene_layer = nn.Linear(profiles.shape[1], hidden)
        last = nn.Linear(hidden, out_dim)
        first = nn.Linear(basis.shape[1], hidden)
        with torch.no_grad():
            first.weight.copy_(gene_layer.weight.double() @ basis)
            first.bias.copy_(gene_layer.bias)
        self.net = nn.Sequential(first, nn.SiLU(), last)

    def forward(self) -> torch.Tensor:
        """The embedding of every condition (rows in the order of the profiles)."""
        return self.net(self.coords)


class CatFusion(nn.Module):
    def __init__(self, latent_dim: int, cond_dim: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(latent_dim + cond_dim, width)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([z, c], dim=1))


class AddFusion(nn.Module):
    def __init__(self, latent_dim: int, cond_dim: int, width: int) -> None:
        super().__init__()
        self.proj_z = nn.Linear(latent_dim, width)
        self.proj_c = nn.Linear(cond_dim, width)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.proj_z(z) + self.proj_c(c)


class AttentionFusion(nn.Module):
    """One query (the projected latent) attends over `n_tokens` slices of the condition embedding."""

    def __init__(self, latent_dim: int, cond_dim: int, width: int, n_tokens: int = 4, heads: int = 4) -> None:
        super().__init__()
        self.n_tokens = n_tokens if cond_dim % n_tokens == 0 else 1
        token_dim = cond_dim // self.n_tokens
        self.proj_z = nn.Linear(latent_dim, width)
        self.proj_c = nn.Linear(token_dim, width)
        self.attn = nn.MultiheadAttention(width, heads if width % heads == 0 else 1, batch_first=True)
        self.norm = nn.LayerNorm(width)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.proj_z(z)
        tokens = self.proj_c(c.view(c.shape[0], self.n_tokens, -1))
        attended, _ = self.attn(self.norm(h).unsqueeze(1), tokens, tokens, need_weights=False)
        return h + attended.squeeze(1)


def make_fusion(kind: str, latent_dim: int, cond_dim: int, width: int) -> nn.Module:
    return {"cat": CatFusion, "add": AddFusion, "attention": AttentionFusion}[kind](latent_dim, cond_dim, width)
