"""Post-guidance: a three-linear-layer real/generated scorer, fed beside generation through a bounded queue."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F

from scldbench.optim import adam
from scldbench.scld.autoencoder import log_normalise

_DONE = object()


class Scorer(nn.Module):
    """Counts -> logits over (generated, real).

    The features are log-normalised expression, or with `n_components` > 0 its leading principal components
    in the real training cells (`fit_projection`): a few hundred cells can be told apart gene by gene by
    memorising them, which says nothing about cells the scorer has not seen.
    """

    def __init__(self, n_genes: int, hidden: int, n_components: int = 0) -> None:
        super().__init__()
        n_features = n_components if n_components > 0 else n_genes
        self.register_buffer("center", torch.zeros(n_genes) if n_components > 0 else None)
        self.register_buffer("components", torch.zeros(n_genes, n_components) if n_components > 0 else None)
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden // 4),
            nn.ReLU(),
            nn.Linear(hidden // 4, 2),
        )

    @torch.no_grad()
    def fit_projection(self, real_counts: torch.Tensor) -> None:
        """Principal axes of the real cells' log-normalised expression (randomised SVD, seeded by torch's RNG)."""
        if self.components is None:
            return
        x = log_normalise(real_counts.float())
        self.center.copy_(x.mean(0))
        k = min(self.components.shape[1], *x.shape)
        # extra directions and power iterations steady the leading ones when the spectrum is flat
        _, _, v = torch.pca_lowrank(x - self.center, q=min(k + 10, *x.shape), center=False, niter=6)
        self.components.zero_()
        self.components[:, :k] = v[:, :k]

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        x = log_normalise(counts)
        if getattr(self, "components", None) is not None:
            x = (x - self.center) @ self.components
        return self.net(x)

    @torch.no_grad()
    def realness(self, counts: torch.Tensor) -> torch.Tensor:
        """Log-odds that each cell is real: ranks as the probability does, without saturating at 0 or 1."""
        logits = self.forward(counts).float()
        return logits[:, 1] - logits[:, 0]


def train_scorer(
    scorer: Scorer,
    real: Callable[[np.ndarray], torch.Tensor],
    n_real: int,
    generated: torch.Tensor,
    epochs: int,
    lr: float,
    batch_size: int,
    rng: np.random.Generator,
    validation: float = 0.0,
) -> dict[str, float]:
    """Cross-entropy on real (label 1) vs generated (label 0) cells for up to `epochs` epochs.

    With `validation` > 0 that fraction of both kinds is held out and the scorer keeps the weights of the epoch
    that ranks them best (held-out ROC AUC; the scorer is only ever used to rank): a scorer fitted until it
    tells every training cell apart has learnt those cells, not what sets generated cells apart. Returns the
    training accuracy of the kept epoch, and with validation its held-out AUC and the epoch kept.
    """
    opt = adam(scorer.parameters(), lr=lr, weight_decay=1e-2, decoupled_weight_decay=True)
    real_fit, real_val = _holdout(n_real, validation, rng)
    gen_fit, gen_val = _holdout(generated.shape[0], validation, rng)
    held_out = real_val.size > 0 and gen_val.size > 0
    if not held_out:
        real_fit, gen_fit = np.arange(n_real), np.arange(generated.shape[0])

    def rows(kind_real: bool, idx: np.ndarray) -> torch.Tensor:
        return real(idx) if kind_real else generated[torch.as_tensor(idx, device=generated.device)]

    best_auc, best_state, figures = -math.inf, None, {}
    for epoch in range(epochs):
        scorer.train()
        real_order, gen_order = rng.permutation(real_fit), rng.permutation(gen_fit)
        n_batches = max(1, min(real_order.size, gen_order.size) // batch_size)
        correct = seen = 0
        for b in range(n_batches):
            part = slice(b * batch_size, (b + 1) * batch_size)
            r, g = rows(True, real_order[part]), rows(False, gen_order[part])
            x = torch.cat([r, g])
            y = torch.cat([torch.ones(len(r)), torch.zeros(len(g))]).long().to(x.device)
            logits = scorer(x).float()
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        figures_now = {"scorer_train_accuracy": correct / max(seen, 1)}
        if held_out:
            auc = _held_out_auc(scorer, rows, real_val, gen_val, batch_size)
            figures_now |= {"scorer_validation_auc": auc, "scorer_epochs_kept": float(epoch + 1)}
            if auc <= best_auc:
                continue
            best_auc = auc
            best_state = {k: v.detach().clone() for k, v in scorer.state_dict().items()}
        figures = figures_now
    if best_state is not None:
        scorer.load_state_dict(best_state)
    scorer.eval()
    return figures


def _holdout(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random split of range(n): (kept for fitting, held out), the held-out part `fraction` of n rounded down."""
    order = rng.permutation(n)
    n_out = int(n * fraction)
    return np.sort(order[n_out:]), np.sort(order[:n_out])


@torch.no_grad()
def _held_out_auc(
    scorer: Scorer,
    rows: Callable[[bool, np.ndarray], torch.Tensor],
    real_idx: np.ndarray,
    gen_idx: np.ndarray,
    batch_size: int,
) -> float:
    """Probability that a held-out real cell out-ranks a held-out generated one (ROC AUC, ties counted half)."""
    scorer.eval()
    scores, step = [], 4 * batch_size
    for is_real, idx in ((True, real_idx), (False, gen_idx)):
        parts = [scorer.realness(rows(is_real, idx[i : i + step])) for i in range(0, idx.size, step)]
        scores.append(torch.cat(parts).cpu().numpy().astype(np.float64))
    labels = np.concatenate([np.ones(real_idx.size), np.zeros(gen_idx.size)])
    return float(roc_auc_score(labels, np.concatenate(scores)))


def score_beside(batches: Iterable[Any], score: Callable[[Any], torch.Tensor], maxsize: int) -> tuple[list, list]:
    """Consume `batches` (generation runs in this thread) while a worker thread scores them from a bounded queue.

    Returns the batches and their scores, in order. The queue's bound keeps memory flat: generation only
    waits when the scorer has fallen `maxsize` batches behind.
    """
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    scores: list[torch.Tensor] = []
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            item = q.get()
            if item is _DONE:
                return
            try:
                scores.append(score(item))
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

    worker = threading.Thread(target=work, name="scld-scorer", daemon=True)
    worker.start()
    kept: list = []
    try:
        for batch in batches:
            kept.append(batch)
            q.put(batch)
    finally:
        q.put(_DONE)
        worker.join()
    if errors:
        raise errors[0]
    return kept, scores


def top_indices(scores: np.ndarray, n_keep: int) -> np.ndarray:
    """Indices of the `n_keep` highest scores, in their original order (ties broken by position)."""
    order = np.argsort(-scores, kind="stable")[:n_keep]
    return np.sort(order)
