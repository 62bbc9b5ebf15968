"""Run the benchmarks: python -m bench [NAME …] [--quick]. NAME is a module suffix (model, simulate, …).

Without NAME every benchmark runs except the sweeps in LONG (each takes from a quarter of an hour to hours on
2 cores); name them to run them."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time

import bench

# Measurements that train many models or load millions of rows: run only when named.
LONG = {"alpha_null": "20 simulated surveys per α setting (hours)", "anomaly": "two 20,000-star surveys (~15 min)",
        "partition": "2 million spectra in two layouts (~16 min)", "science": "the science figures (~5 min+)",
        "recipe": "a training grid over batch and learning rate (~20 min)",
        "fullcov": "three seeds × two sVAEs, full vs diagonal likelihood (20–40 min)"}


def main(argv: list[str] | None = None) -> int:
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=names + [[]], metavar="NAME", help=f"one of {names}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    failed = []
    if not args.names:
        print("long sweeps left out (name them to run): "
              + "; ".join(f"{n}: {why}" for n, why in LONG.items()), flush=True)
    for name in args.names or [n for n in names if n not in LONG]:
        print(f"\n=== bench {name} ===", flush=True)
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"bench.bench_{name}").main(quick=args.quick)
        except Exception as exc:  # keep going: one broken benchmark should not hide the others' figures
            failed.append(name)
            print(f"bench {name} FAILED: {exc!r}", file=sys.stderr)
        print(f"=== {name}: {time.perf_counter() - t0:.1f} s ===", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
