"""Pre-guidance: cluster / global mean expression through an MLP, fused with the denoiser's input.

`cat` (the paper's) concatenates the embedding to the noisy latent; `add` adds a projection of it to the
first hidden layer; `attention` lets the hidden state attend over the embedding split into tokens.
"""

from __future__ import annotations

import torch
from torch import nn


class _GeneInput(nn.Module):
    """`nn.Linear(n_genes, hidden)` with its weight stored genes x hidden.

    The encoder only ever sees the few condition profiles, so the weight's gradient is a rank-few product
    written over every gene; built as profiles' transpose times the output gradient it takes half the time it
    does in `nn.Linear`'s layout (the decision log, "condition encoder"). Same initial values as `nn.Linear`
    (drawn through one), same outputs and gradients.
    """

    def __init__(self, n_genes: int, hidden: int) -> None:
        super().__init__()
        linear = nn.Linear(n_genes, hidden)
        self.weight_t = nn.Parameter(linear.weight.detach().t().contiguous())
        self.bias = nn.Parameter(linear.bias.detach().clone())

    def forward(self, profiles: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, profiles, self.weight_t)


class ConditionEncoder(nn.Module):
    """Mean profile (log-normalised, one row per condition) -> embedding."""

    def __init__(self, n_genes: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(_GeneInput(n_genes, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))

    def forward(self, profiles: torch.Tensor) -> torch.Tensor:
        return self.net(profiles)


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
