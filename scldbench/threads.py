"""How many threads this process may use, and capping BLAS / OpenMP / torch threads to a budget.

Worker processes cap themselves (see `scldbench.executors`) so that N workers do not oversubscribe the cores;
metrics that parallelise on their own (MMD chunks, random forests) read the same budget.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

#: environment variables read by BLAS / OpenMP / numba libraries when they load
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                   "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")


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


def _numba_threads(threads: int | None) -> int | None:
    """Set numba's parallel threads (capped at its launch count) if numba is loaded; return the previous count.

    numba's OpenMP threading layer sets the calling thread's OpenMP thread count to its own (the cores, unless
    NUMBA_NUM_THREADS says otherwise) whenever scanpy runs one of its parallel kernels, and torch shares that
    OpenMP runtime: left alone, every torch fit after a scanpy call runs on all cores in every worker at once.
    """
    if "numba" not in sys.modules:
        return None
    import numba

    previous = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    return previous


def limit_threads(threads: int) -> None:
    """Cap BLAS / OpenMP, numba and torch threads in this process (environment first, for libraries not yet
    loaded)."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    _numba_threads(threads)
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
    saved_numba = _numba_threads(threads)
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(saved_torch)
        _numba_threads(saved_numba)
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
