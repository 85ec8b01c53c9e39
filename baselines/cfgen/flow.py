"""Conditional flow matching with straight (rectified-flow) paths, and the ODE solvers that sample it.

Pure functions on tensors. The path from noise x0 ~ N(0, I) at t = 0 to a data point x1 at t = 1 is the
straight line x_t = (1 - t) x0 + t x1 (independent coupling: x0 and x1 are drawn independently), whose velocity
is the constant x1 - x0; a network regressed onto that target learns the marginal velocity field, and
integrating it from t = 0 to 1 carries noise to data.

Guidance convention (the same as SCLD's, so one `guidance` value means the same in every report):
v = (1 + w) v(z, c) - w v(z, null) = v(z, c) + w (v(z, c) - v(z, null)). w = 0 is the plain conditional field,
w = -1 the unconditional one; w > 0 pushes further toward the label. In the form v(null) + s (v(c) - v(null))
used by classifier-free guidance papers, s = 1 + w.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from scldbench.scld.sampling import guided_eps

#: a velocity field v(x, t): x (n, d), t (n,) -> (n, d)
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SOLVERS = ("euler", "midpoint")


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The point at time `t` (one per row) on the straight path from `x0` to `x1`."""
    t = t.reshape(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - t) * x0 + t * x1


def target_velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """d x_t / dt along the straight path: the same at every t."""
    return x1 - x0


def guided_velocity(v_cond: torch.Tensor, v_null: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance of velocities, in SCLD's convention (module docstring): w = 0 is `v_cond`."""
    # the same linear combination SCLD applies to noise predictions
    return guided_eps(v_cond, v_null, w)


def integrate(field: VelocityFn, x0: torch.Tensor, steps: int, solver: str = "euler") -> torch.Tensor:
    """Solve dx/dt = field(x, t) from t = 0 to t = 1 in `steps` equal steps of `solver` ("euler" or "midpoint")."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown ODE solver {solver!r}; use one of {', '.join(SOLVERS)}")
    if steps < 1:
        raise ValueError(f"the ODE needs at least one step, got {steps}")
    x, h = x0, 1.0 / steps
    for i in range(steps):
        t = torch.full((x.shape[0],), i * h, device=x.device, dtype=x.dtype)
        if solver == "euler":
            x = x + h * field(x, t)
        else:
            half = x + 0.5 * h * field(x, t)
            x = x + h * field(half, t + 0.5 * h)
    return x
