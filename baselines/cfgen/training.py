"""Training of CFGen's velocity field by conditional flow matching on the encoded training cells.

The autoencoder is trained first with SCLD's loop (`scldbench.scld.training.train_autoencoder`), which calls the
module's `loss`; this file holds the second stage only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from scldbench.baselines.cfgen.flow import interpolate, target_velocity
from scldbench.baselines.cfgen.modules import VelocityField
from scldbench.optim import adam
from scldbench.scld.training import batches


def train_flow(
    field: VelocityField,
    latents: torch.Tensor,
    labels: torch.Tensor,
    log_size: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    label_dropout: float,
    grad_clip: float,
    rng: np.random.Generator,
    log: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Regress `field` onto x1 - x0 at x_t on straight paths from N(0, I) to the (standardised) latents.

    A fraction `label_dropout` of every batch sees the null label, so that the same network also learns the
    unconditional field guidance needs. `labels` already holds the null index where a cell has no label.
    """
    opt = adam(field.parameters(), lr=lr, weight_decay=weight_decay, decoupled_weight_decay=True)
    n, device = latents.shape[0], latents.device
    field.train()
    t0, n_steps, running = time.perf_counter(), 0, float("nan")
    for epoch in range(epochs):
        total, count = 0.0, 0
        for batch in batches(n, min(batch_size, n), rng):
            idx = torch.as_tensor(batch, device=device)
            x1, y = latents[idx], labels[idx].clone()
            y[torch.rand(idx.numel(), device=device) < label_dropout] = field.null_index
            x0 = torch.randn_like(x1)
            t = torch.rand(idx.numel(), device=device)
            pred = field(interpolate(x0, x1, t), t, y, log_size[idx])
            loss = F.mse_loss(pred, target_velocity(x0, x1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(field.parameters(), grad_clip)
            opt.step()
            total, count, n_steps = total + float(loss.detach()) * idx.numel(), count + idx.numel(), n_steps + 1
        running = total / max(count, 1)
        if log is not None and (epoch + 1) % max(1, epochs // 5) == 0:
            log(f"flow matching epoch {epoch + 1}/{epochs} loss {running:.4f}")
    field.eval()
    seconds = time.perf_counter() - t0
    return {"flow_loss": running, "flow_seconds": seconds, "flow_steps": n_steps,
            "flow_steps_per_s": n_steps / max(seconds, 1e-9)}
