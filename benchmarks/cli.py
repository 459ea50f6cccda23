"""Benchmark the command line's start-up: `wamdata --help` and `wamdata validate` against `python -c pass`.

    python benchmarks/cli.py [--dataset build/demo] [--rounds 5]

Each command runs as a fresh process, as a user types it, best of ``--rounds``; the ratio is to a bare
interpreter start measured in the same run (the machine is shared: absolute times drift, ratios less so).
It also lists which heavy libraries (torch, ray, tensorflow) each command's imports pulled in: none of them
should appear for --help, inspect or validate. Without ``--dataset``, a small toy-world dataset is written
first (through ``wamdata ingest toyworld``, not timed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "tensorflow")
SMALL_TOY_WORLD = """name: toyworld_cli_bench
image_size: 64
max_steps: 64
noise: 0.1
camera: front
val_every: 10
shard_bytes: 1000000
sources:
  toy_robot: {kind: sim, embodiment: toy_pusher, appearance: robot, episodes: 100, first_seed: 0, with_actions: true}
"""


def best_seconds(command: list[str], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        best = min(best, time.perf_counter() - started)
    return best


def heavy_imports(module_args: list[str]) -> list[str]:
    """The heavy top-level packages that running ``wamdata ARGS`` in-process imports."""
    probe = ("import runpy, sys\n"
             f"sys.argv = ['wamdata', *{module_args!r}]\n"
             "try:\n    runpy.run_module('wamdata.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             f"print('HEAVY:', *(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    return next(line for line in done.stdout.splitlines() if line.startswith("HEAVY:")).split()[1:]


def toy_dataset(folder: Path) -> Path:
    config = folder / "toy.yaml"
    config.write_text(SMALL_TOY_WORLD)
    out = folder / "toy"
    subprocess.run([sys.executable, "-m", "wamdata.cli", "-q", "ingest", "toyworld", str(config), "--out", str(out)],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", help="dataset to validate (default: a small toy world written first)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(REPO))  # run from a checkout without installing
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(args.dataset) if args.dataset else toy_dataset(Path(tmp))
        wamdata = [sys.executable, "-m", "wamdata.cli"]
        bare = best_seconds([sys.executable, "-c", "pass"], args.rounds)
        print(f"{'command':34s} {'seconds':>8s} {'vs python -c pass':>18s}  heavy imports")
        print(f"{'python -c pass':34s} {bare:8.3f} {1.0:17.1f}x")
        for label, command in (("wamdata --help", ["--help"]), ("wamdata inspect DATASET", ["inspect", str(dataset)]),
                               ("wamdata validate DATASET", ["-q", "validate", str(dataset)])):
            seconds = best_seconds(wamdata + command, args.rounds)
            print(f"{label:34s} {seconds:8.3f} {seconds / bare:17.1f}x  {' '.join(heavy_imports(command)) or 'none'}")


if __name__ == "__main__":
    main()
