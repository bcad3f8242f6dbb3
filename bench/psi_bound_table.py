"""False alarms, size at the threshold, and power of the drift rule, per feature shape.

    .venv/bin/python bench/psi_bound_table.py [--baselines 50] [--per-baseline 200] [--n 5000] [--seed 12]
                                              [--only 'zipf 200' ...] [--sizes 300,1000]

A check is flagged when M >= min_samples (100) and psiLower >= 0.1 (95% one-sided). Each cell
is the share of `baselines x per-baseline` repetitions flagged: a fresh baseline of N reference
draws per block, the current counts drawn from the current population (tests/support/
drift_simulation.py). Three blocks:

- no drift: the current population is the baseline's (target: < 5%, expected far below);
- at the threshold: the true PSI is exactly 0.1, the hardest case of H0 (a test of size 5%
  flags at most about 5% here);
- drift: the issue's power cases (target: >= 99% at M = 1,000).

`true PSI` is the population PSI over the frozen bins, averaged over the baselines. Prints the
table, then one JSON line with every cell.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.drift_simulation import (  # noqa: E402
    BOUNDARY_SHAPES,
    NULL_SHAPES,
    POWER_SHAPES,
    Scenario,
    flag_rate,
)

SAMPLE_SIZES = (100, 300, 1000, 5000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines", type=int, default=50, help="baselines drawn per cell")
    parser.add_argument("--per-baseline", type=int, default=200, help="current samples per baseline")
    parser.add_argument("--n", type=int, default=5000, help="baseline sample size N")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="only the rows whose shape contains TEXT (repeatable; default every row)")
    parser.add_argument("--sizes", default=",".join(map(str, SAMPLE_SIZES)), help="current sample sizes M")
    args = parser.parse_args(argv)
    sizes = tuple(int(m) for m in args.sizes.split(","))
    started = time.perf_counter()
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    width = 34
    header = f"{'shape':<{width}} {'true PSI':>8} " + " ".join(f"{'M=' + str(m):>8}" for m in sizes)
    for block, shapes in (("no drift: false alarms", NULL_SHAPES), ("true PSI = 0.1: size at the threshold",
                                                                        BOUNDARY_SHAPES),
                          ("drift: power", POWER_SHAPES)):
        print(f"\n{block} (N = {args.n}, {args.baselines} x {args.per_baseline} repetitions per cell)")
        print(header)
        results[block] = {}
        for i, (name, scenario) in enumerate(shapes.items()):
            if args.only and not any(text in name for text in args.only):
                continue
            row = _row(scenario, args, sizes, seed=args.seed * 1000 + i)
            results[block][name] = row
            psi = next(iter(row.values()))
            print(f"{name:<{width}} {psi['true_psi']:>8.3f} "
                  + " ".join(f"{row[str(m)]['flagged']:>8.2%}" for m in sizes))
    print(f"\n{time.perf_counter() - started:.1f} s")
    print(json.dumps({"n": args.n, "repetitions": args.baselines * args.per_baseline, "results": results}))
    return 0


def _row(scenario: Scenario, args: argparse.Namespace, sizes: tuple[int, ...], seed: int
         ) -> dict[str, dict[str, float]]:
    row = {}
    for m in sizes:
        rate = flag_rate(scenario, m, n=args.n, seed=seed + m, baselines=args.baselines,
                         per_baseline=args.per_baseline)
        row[str(m)] = {"flagged": rate.flagged, "true_psi": rate.true_psi}
    return row


if __name__ == "__main__":
    sys.exit(main())
