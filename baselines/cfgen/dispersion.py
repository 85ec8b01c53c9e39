"""The count model's inverse dispersions at their maximum-likelihood values given the trained decoder.

CFGen's likelihood has one theta per gene, learned with the network weights. Trained jointly for a few
thousand steps at the network's learning rate, a log theta moves about one learning rate per step, so it ends
close to wherever it started; the profile maximum given the decoder's means is the value the same objective
converges to, and is found exactly per gene by bisection.
"""

from __future__ import annotations

import numpy as np
import torch

from scldbench.baselines.cfgen.modules import CountAutoencoder
from scldbench.scld.dispersion import nb_theta_mle
from scldbench.scld.training import CountData

#: lower bound of the fitted theta: a variance of a few hundred times the squared mean at most
THETA_FLOOR = 1e-3


@torch.no_grad()
def decoded_means(ae: CountAutoencoder, counts: torch.Tensor) -> torch.Tensor:
    """NB means of `counts` (cells x genes) through `ae`: gene proportions times each cell's library size."""
    return ae.proportions(ae.encode(counts)) * counts.sum(dim=1, keepdim=True)


@torch.no_grad()
def refit_log_theta(ae: CountAutoencoder, data: CountData, cells: np.ndarray, chunk: int = 1024) -> torch.Tensor:
    """log theta per gene maximising the NB likelihood of the cells `cells` around their decoded means."""
    was_training = ae.training
    ae.eval()
    counts, means = [], []
    for start in range(0, cells.size, chunk):
        x = data(cells[start : start + chunk])
        counts.append(x)
        means.append(decoded_means(ae, x))
    ae.train(was_training)
    x, mu = torch.cat(counts), torch.cat(means)
    group = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    return nb_theta_mle(x, mu, group, 1, THETA_FLOOR)[0]
