"""Run the benchmarks: python -m bench [NAME …] [--quick]. NAME is a module suffix (model, simulate, …)."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str] | None = None) -> int:
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=names + [[]], metavar="NAME", help=f"one of {names}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    failed = []
    for name in args.names or names:
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
