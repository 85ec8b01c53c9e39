"""The eps-prediction backbone: a U-Net-style stack of wide residual MLP blocks over the latent vector.

Widths go down `channels` and back up, with skip connections between blocks of equal width; the time
embedding enters every block. The condition enters once, through the fusion at the input.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from scldbench.scld.conditioning import ConditionEncoder, make_fusion


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return nn.functional.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    def __init__(self, d_in: int, d_out: int, time_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_in)
        self.fc1 = nn.Linear(d_in, d_out)
        self.time = nn.Linear(time_dim, d_out)
        self.norm2 = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(d_out, d_out)
        self.act = nn.SiLU()
        self.skip = nn.Identity() if d_in == d_out else nn.Linear(d_in, d_out)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        out = self.fc1(self.act(self.norm1(h))) + self.time(temb)
        out = self.fc2(self.drop(self.act(self.norm2(out))))
        return self.skip(h) + out


class Denoiser(nn.Module):
    """eps(z_t, t, condition); conditions are row indices into `profiles` (clusters, then the global mean)."""

    def __init__(
        self,
        latent_dim: int,
        profiles: torch.Tensor,
        channels: list[int],
        cond_dim: int,
        time_dim: int,
        dropout: float,
        fusion: str,
    ) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.cond = ConditionEncoder(profiles.float(), max(cond_dim, 128), cond_dim)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.fuse = make_fusion(fusion, latent_dim, cond_dim, channels[0])
        self.down = nn.ModuleList()
        widths = [channels[0], *channels]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            self.down.append(ResBlock(a, b, time_dim, dropout))
        self.mid = ResBlock(channels[-1], channels[-1], time_dim, dropout)
        self.up = nn.ModuleList()
        ups = list(reversed(channels))
        outs = [*ups[1:], channels[0]]
        for skip_w, out_w, in_w in zip(ups, outs, [channels[-1], *outs[:-1]], strict=True):
            self.up.append(ResBlock(in_w + skip_w, out_w, time_dim, dropout))
        self.out_norm = nn.LayerNorm(channels[0])
        self.out = nn.Linear(channels[0], latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        temb = self.time_mlp(timestep_embedding(t, self.time_dim))
        c = self.cond()[cond]
        h = self.fuse(z, c)
        skips = []
        for block in self.down:
            h = block(h, temb)
            skips.append(h)
        h = self.mid(h, temb)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], dim=1), temb)
        return self.out(nn.functional.silu(self.out_norm(h)))
