"""How many threads this process may use, and capping BLAS / OpenMP / torch threads to a budget.

Worker processes cap themselves (see `scldbench.executors`) so that N workers do not oversubscribe the cores;
metrics that parallelise on their own (MMD chunks, random forests) read the same budget.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: environment variables read by BLAS / OpenMP libraries when they load
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                   "NUMEXPR_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may use (the CPU affinity mask, which SLURM and containers set)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - macOS
        return max(os.cpu_count() or 1, 1)


def thread_budget() -> int:
    """Threads this process should use: its OMP_NUM_THREADS (set for worker processes) or its cores."""
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "")), 1)
    except ValueError:
        return available_cores()


def limit_threads(threads: int) -> None:
    """Cap BLAS / OpenMP and torch threads in this process (environment first, for libraries not yet loaded)."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    import torch

    torch.set_num_threads(threads)


@contextlib.contextmanager
def threads_limited(threads: int) -> Iterator[None]:
    """`limit_threads` for the duration of a `with` block in this process, then the previous limits back."""
    import torch
    from threadpoolctl import threadpool_limits

    saved_env = {var: os.environ.get(var) for var in THREAD_ENV_VARS}
    saved_torch = torch.get_num_threads()
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(saved_torch)
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
