"""Post-guidance: a three-linear-layer real/generated scorer, fed beside generation through a bounded queue."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from scldbench.scld.autoencoder import log_normalise

_DONE = object()


class Scorer(nn.Module):
    """Counts -> logits over (generated, real); the features are log-normalised expression."""

    def __init__(self, n_genes: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_genes, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 4), nn.ReLU(), nn.Linear(hidden // 4, 2)
        )

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        return self.net(log_normalise(counts))

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
) -> float:
    """Cross-entropy on real (label 1) vs generated (label 0) cells; returns the final training accuracy."""
    opt = torch.optim.AdamW(scorer.parameters(), lr=lr, weight_decay=1e-2)
    n_gen = generated.shape[0]
    scorer.train()
    correct = seen = 0
    for epoch in range(epochs):
        real_order, gen_order = rng.permutation(n_real), rng.permutation(n_gen)
        n_batches = max(1, min(n_real, n_gen) // batch_size)
        correct = seen = 0
        for b in range(n_batches):
            r = real(real_order[b * batch_size : (b + 1) * batch_size])
            g = generated[torch.as_tensor(gen_order[b * batch_size : (b + 1) * batch_size], device=generated.device)]
            x = torch.cat([r, g])
            y = torch.cat([torch.ones(len(r)), torch.zeros(len(g))]).long().to(x.device)
            logits = scorer(x).float()
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if epoch == epochs - 1:
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
    scorer.eval()
    return correct / max(seen, 1)


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
