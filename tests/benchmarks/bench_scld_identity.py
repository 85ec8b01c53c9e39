"""SCLD's output, fixed: fit small models with fixed seeds on pbmc68k-mini and record (or check) their samples.

    python tests/benchmarks/bench_scld_identity.py --record identity.npz   # before a change that must not alter output
    python tests/benchmarks/bench_scld_identity.py --check identity.npz    # after it: byte-identical or a failure

Each configuration is fitted once; its samples (counts at the configured guidance, at another guidance, and
unconditional) and its fit diagnostics (times left out) are compared byte for byte. A model saved and loaded
again must sample the same counts as the one that was fitted. Runs single-threaded in a few minutes.
Not collected by pytest (its name does not start with test_).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

# few steps and small networks: the point is the path every setting takes, not quality
SMALL: dict[str, Any] = {
    "latent_dim": 8,
    "ae_hidden": 64,
    "ae_epochs": 2,
    "cond_dim": 16,
    "denoiser_channels": [64, 32],
    "time_dim": 16,
    "steps": 60,
    "scorer_hidden": 32,
    "scorer_epochs": 2,
    "marginal_draw": 16,
}

#: name -> settings over SMALL (the flat parameter names the generator accepts)
CONFIGS: dict[str, dict[str, Any]] = {
    "default-ddpm": {},
    "guidance-0.5": {"guidance": 0.5},
    "marginals-off": {"marginal_calibration": "none"},
    "ddim-mean-calibration": {"sampler": "ddim", "ddim_steps": 20, "latent_calibration": "mean"},
    "no-scorer-no-calibration": {"scorer": False, "latent_calibration": "none", "marginal_calibration": "none"},
    "paper-literal-attention": {
        "ae_loss": "mse", "count_sampling": "mean", "ae_latent_activation": "relu", "ae_anchor": "none",
        "library": "empirical", "latent_scaling": "standard", "fusion": "attention", "sampler": "ddim",
        "ddim_steps": 10, "marginal_calibration": "none",
    },
}


def digest(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]


#: diagnostics of settings that no longer exist (always 0 before they went)
RETIRED = ("ae_validation_cells",)


def stable(diagnostics: dict[str, Any]) -> dict[str, Any]:
    """Fit diagnostics without the ones that measure time."""
    return {
        k: v for k, v in diagnostics.items()
        if not (k.endswith("_seconds") or k.endswith("_per_s") or k in RETIRED)
    }


def run(name: str, settings: dict[str, Any], data: Any) -> dict[str, np.ndarray | str]:
    from scldbench.scld.generator import SCLD

    model = SCLD(**(SMALL | settings), seed=3, device="cpu")
    model.fit(data.train, labels_key=data.labels_key)
    key = data.labels_key
    asked = data.test.obs[key].astype(str).value_counts().to_dict()
    n_test = data.test.n_obs
    out: dict[str, Any] = {
        "configured": model.sample(n_test, labels=asked, seed=11).X,
        "other-guidance": model.sample(n_test, labels=asked, guidance=-1.0, seed=12).X,
        "unconditional": model.sample(50, seed=13).X,
    }
    with tempfile.TemporaryDirectory() as folder:
        model.save(folder)
        loaded = type(model).load(folder)
        out["loaded"] = loaded.sample(n_test, labels=asked, seed=11).X
    out["diagnostics"] = json.dumps(stable(model.diagnostics_), sort_keys=True, default=float)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", help="write the samples of every configuration to this .npz file")
    mode.add_argument("--check", help="compare every configuration with the samples in this .npz file")
    ap.add_argument("--only", nargs="*", default=None, help="configurations to run (default: all)")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)
    from scldbench.data import PrepareSettings, load_dataset, prepare

    adata, _ = load_dataset("pbmc68k-mini")
    data = prepare(adata, PrepareSettings(labels_key="louvain"))
    reference = dict(np.load(args.check)) if args.check else {}
    recorded: dict[str, np.ndarray] = {}
    failures = 0
    for name, settings in CONFIGS.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        out = run(name, settings, data)
        for part, value in out.items():
            array = np.asarray(value)
            recorded[f"{name}/{part}"] = array
            if part == "loaded":
                same = np.array_equal(array, out["configured"])
                print(f"{name:26s} {part:15s} {'same as fitted' if same else 'DIFFERS from fitted'}")
                failures += not same
            elif args.check:
                old = reference.get(f"{name}/{part}")
                if part == "diagnostics" and old is not None:
                    old = np.asarray(json.dumps(stable(json.loads(str(old))), sort_keys=True, default=float))
                same = old is not None and old.dtype == array.dtype and old.tobytes() == array.tobytes()
                print(f"{name:26s} {part:15s} {'identical' if same else 'DIFFERENT'} {digest(array)}")
                if not same and part == "diagnostics" and old is not None:
                    print(f"    was: {old}\n    now: {array}")
                failures += not same
            else:
                print(f"{name:26s} {part:15s} {digest(array)}")
        print(f"{name:26s} ({time.perf_counter() - start:.1f}s)", flush=True)
    if args.record:
        np.savez(args.record, **recorded)
        print(f"recorded {len(recorded)} arrays in {args.record}")
    print("all identical" if args.check and not failures else f"{failures} difference(s)" if failures else "done")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
