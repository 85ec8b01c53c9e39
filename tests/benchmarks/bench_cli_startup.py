"""How long the command line takes to answer before it does any work: `scldbench --help`, `scldbench run -h`,
`scldbench --version`, and `import scldbench`, each the median of fresh processes, beside the 1 s target.

    python tests/benchmarks/bench_cli_startup.py              # 7 processes per command
    python tests/benchmarks/bench_cli_startup.py --repeats 15

Every command starts a new Python process (what a user's shell does), so the figures include the interpreter's
own start (printed first, as the floor). The CLI imports typer, rich and scldbench.errors only; every command
imports torch, scanpy and the rest when it runs, so help and shell completion stay fast. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGET_SECONDS = 1.0
CLI = "from scldbench.cli import main; main()"


def seconds(argv: list[str], repeats: int) -> float:
    """Median wall-clock seconds of `argv` run as a fresh process, after one untimed run (warm file cache)."""
    subprocess.run(argv, capture_output=True, check=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    script = shutil.which("scldbench")
    base = [script] if script else [sys.executable, "-c", CLI]
    cases = [
        ("python -c pass (floor)", [sys.executable, "-c", "pass"], None),
        ("import scldbench", [sys.executable, "-c", "import scldbench"], TARGET_SECONDS),
        ("scldbench --help", [*base, "--help"], TARGET_SECONDS),
        ("scldbench -h", [*base, "-h"], TARGET_SECONDS),
        ("scldbench run -h", [*base, "run", "-h"], TARGET_SECONDS),
        ("scldbench --version", [*base, "--version"], TARGET_SECONDS),
    ]
    print(f"{'command':<26} {'median s':>9} {'target s':>9}  verdict   ({args.repeats} fresh processes each)")
    failed = False
    for name, argv, target in cases:
        value = seconds(argv, args.repeats)
        verdict = "" if target is None else ("ok" if value < target else "SLOWER")
        failed |= verdict == "SLOWER"
        print(f"{name:<26} {value:>9.3f} {'' if target is None else f'{target:.1f}':>9}  {verdict}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
