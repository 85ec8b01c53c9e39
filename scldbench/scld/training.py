"""Training loops: the autoencoder first, then the latent denoiser; one code path for CPU and CUDA."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from scldbench.optim import adam
from scldbench.scld.autoencoder import Autoencoder
from scldbench.scld.denoiser import Denoiser
from scldbench.scld.schedule import Schedule, q_sample

# a count matrix up to this size is kept dense on the device; larger ones are densified batch by batch
_DENSE_LIMIT_BYTES = 4 * 2**30


class CountData:
    """Rows of a (sparse or dense) count matrix as dense float tensors on `device`."""

    def __init__(self, x: np.ndarray | sp.spmatrix, device: torch.device) -> None:
        self.device = device
        self.n_obs, self.n_vars = x.shape
        self._dense: torch.Tensor | None = None
        self._csr: sp.csr_matrix | None = None
        if self.n_obs * self.n_vars * 4 <= _DENSE_LIMIT_BYTES:
            dense = x.toarray() if sp.issparse(x) else np.asarray(x)
            self._dense = torch.as_tensor(dense, dtype=torch.float32, device=device)
        else:
            self._csr = sp.csr_matrix(x, dtype=np.float32)

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        if self._dense is not None:
            return self._dense[torch.as_tensor(idx, device=self.device)]
        assert self._csr is not None
        return torch.as_tensor(self._csr[idx].toarray(), device=self.device)

    def library(self) -> np.ndarray:
        if self._dense is not None:
            return self._dense.sum(dim=1).cpu().numpy()
        assert self._csr is not None
        return np.asarray(self._csr.sum(axis=1)).ravel()


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op elsewhere, so that the same code runs on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def validation_split(
    cluster_of: np.ndarray, fraction: float, rng: np.random.Generator, min_cells: int
) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) cell indices, `fraction` of every cluster held out; no split when either side would
    have fewer than `min_cells` cells."""
    everything = np.arange(cluster_of.size)
    n_val = int(round(fraction * cluster_of.size))
    if n_val < min_cells or cluster_of.size - n_val < min_cells:
        return everything, everything[:0]
    held = [
        rng.permutation(members)[: int(round(fraction * members.size))]
        for members in (np.flatnonzero(cluster_of == k) for k in np.unique(cluster_of))
    ]
    val_idx = np.sort(np.concatenate(held))
    return np.setdiff1d(everything, val_idx), val_idx


def train_autoencoder(
    ae: Autoencoder,
    data: CountData,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    rng: np.random.Generator,
    amp: bool,
    log: Callable[[str], None] | None = None,
    train_idx: np.ndarray | None = None,
    val_idx: np.ndarray | None = None,
    cluster: torch.Tensor | None = None,
) -> dict[str, float]:
    """Fit on `train_idx` (all cells by default); with `val_idx`, keep the weights of the epoch with the lowest
    validation loss, the untrained start included (the autoencoder overfits a few thousand cells long before
    its schedule ends). `cluster` (one index per cell) is what an anchored decoder needs."""
    train_idx = np.arange(data.n_obs) if train_idx is None else np.asarray(train_idx)
    of = _cluster_lookup(cluster, data.device)
    opt = adam([p for p in ae.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay,
               decoupled_weight_decay=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1), eta_min=lr * 0.05)
    t0, loss_value, n_steps = time.perf_counter(), float("nan"), 0
    best_val, best_epoch, best_state = float("inf"), epochs, None
    if val_idx is not None and len(val_idx):
        best_val, best_epoch = validation_loss(ae, data, val_idx, amp, cluster), 0
        best_state = {k: v.detach().clone() for k, v in ae.state_dict().items()}
    for epoch in range(epochs):
        ae.train()
        total, count = 0.0, 0
        for batch in batches(train_idx.size, batch_size, rng):
            idx = train_idx[batch]
            with autocast(data.device, amp):
                loss = ae.loss(data(idx), of(idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count, n_steps = total + float(loss.detach()) * len(idx), count + len(idx), n_steps + 1
        sched.step()
        loss_value = total / max(count, 1)
        message = f"autoencoder epoch {epoch + 1}/{epochs} loss {loss_value:.4f}"
        if val_idx is not None and len(val_idx):
            val = validation_loss(ae, data, val_idx, amp, cluster)
            if val < best_val:
                best_val, best_epoch = val, epoch + 1
                best_state = {k: v.detach().clone() for k, v in ae.state_dict().items()}
            message += f" validation {val:.4f}"
        if log is not None and (epoch + 1) % max(1, epochs // 5) == 0:
            log(message)
    if best_state is not None:
        ae.load_state_dict(best_state)
    ae.eval()
    seconds = time.perf_counter() - t0
    figures = {"ae_loss": loss_value, "ae_seconds": seconds, "ae_steps_per_s": n_steps / max(seconds, 1e-9)}
    if best_state is not None:
        figures |= {"ae_validation_loss": best_val, "ae_best_epoch": best_epoch}
    return figures


def _cluster_lookup(cluster: torch.Tensor | None, device: torch.device) -> Callable[[np.ndarray], torch.Tensor | None]:
    if cluster is None:
        return lambda idx: None
    return lambda idx: cluster[torch.as_tensor(idx, device=device)]


@torch.no_grad()
def validation_loss(
    ae: Autoencoder,
    data: CountData,
    idx: np.ndarray,
    amp: bool,
    cluster: torch.Tensor | None = None,
    chunk: int = 1024,
) -> float:
    """The autoencoder's loss on the cells `idx`, weighted as its training batches are."""
    was_training = ae.training
    ae.eval()
    of = _cluster_lookup(cluster, data.device)
    total = 0.0
    for start in range(0, len(idx), chunk):
        part = idx[start : start + chunk]
        with autocast(data.device, amp):
            total += float(ae.loss(data(part), of(part))) * len(part)
    ae.train(was_training)
    return total / max(len(idx), 1)


def train_denoiser(
    model: Denoiser,
    latents: torch.Tensor,
    cond: torch.Tensor,
    global_index: int,
    schedule: Schedule,
    steps: int,
    lr: float,
    batch_size: int,
    cond_drop: float,
    amp: bool,
    rng: np.random.Generator,
    log: Callable[[str], None] | None = None,
) -> tuple[Denoiser, dict[str, float]]:
    """eps-prediction MSE with AdamW at a constant rate (the paper's); a fraction `cond_drop` of each batch sees the
    global condition instead of its cluster. Returns the trained model and training figures."""
    device = latents.device
    opt = adam(model.parameters(), lr=lr, weight_decay=0.01, decoupled_weight_decay=True)  # AdamW's default decay
    n = latents.shape[0]
    model.train()
    t0 = time.perf_counter()
    running = torch.zeros((), device=device)
    for step in range(steps):
        idx = torch.as_tensor(rng.integers(0, n, size=min(batch_size, n)), device=device)
        z0, c = latents[idx], cond[idx].clone()
        drop = torch.rand(len(idx), device=device) < cond_drop
        c[drop] = global_index
        t = torch.randint(0, schedule.timesteps, (len(idx),), device=device)
        noise = torch.randn_like(z0)
        with autocast(device, amp):
            pred = model(q_sample(schedule, z0, t, noise), t, c)
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # a tensor, so that CUDA never waits on the host to read the loss back
        running = 0.98 * running + 0.02 * loss.detach() if step else loss.detach()
        if log is not None and (step + 1) % max(1, steps // 5) == 0:
            log(f"diffusion step {step + 1}/{steps} loss {float(running):.4f}")
    model.eval()
    seconds = time.perf_counter() - t0
    return model, {
        "diffusion_loss": float(running),
        "diffusion_seconds": seconds,
        "diffusion_steps_per_s": steps / max(seconds, 1e-9),
    }
