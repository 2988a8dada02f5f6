"""The whole benchmark suite (``make bench``): every benchmark at one size, then the plots.

    python -m benchmarks.suite [--size small|large] [--only batch,train_scale,...] [--record]

``small`` (the default, about half an hour on 2 cores) runs each benchmark at the sizes a
laptop handles; ``large`` adds the 1M-item catalogue and longer training budgets. Each
benchmark runs as its own process (so memory peaks are its own), prints its table, writes its
results as JSON under ``--out`` (default ``docs/bench/``) and, with ``--record``, appends the
table with its command and machine to docs/BENCHMARKS.md. Then ``benchmarks.plots`` draws the
PNGs referenced from the README from whatever JSON is there.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchmarks.common import REPO

ML = str(REPO / "data" / "ml-latest-small")

#: name → (arguments at "small", extra or replaced arguments at "large")
PLAN: dict[str, tuple[list[str], list[str]]] = {
    "batch": (["--items", "10000", "100000", "--repeats", "2"], ["--items", "10000", "100000", "1000000"]),
    "train_scale": (["--sizes", "10k,100k", "--minutes", "1"], ["--sizes", "10k,100k,1M", "--minutes", "3"]),
    "scale_data": (["--sizes", "10k,100k"], ["--sizes", "10k,100k,1M"]),
    "validation": (["--rows", "1000000", "--with-import"], ["--rows", "10000000", "--with-import"]),
    "cold_items": (["--skip-quality", "--speed", "100000:1000"], ["--speed", "100000:1000", "100000:10000"]),
    "quality": (
        ["--data-dir", ML, "--budget-min", "4", "--checkpoints", "1,2,3,4"],
        ["--data-dir", ML, "--budget-min", "10", "--checkpoints", "1,2,4,8"],
    ),
    "pipeline": (["--data-dir", ML], ["--data-dir", ML]),
    "profile_dag": (["--data-dir", ML], ["--data-dir", ML]),
}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("small", "large"), default="small")
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(PLAN))
    p.add_argument("--out", default=str(REPO / "docs" / "bench"))
    p.add_argument("--record", action="store_true", help="append each table to BENCHMARKS.md")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(PLAN)
    unknown = sorted(set(names) - set(PLAN))
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; known: {', '.join(PLAN)}")
    env = {**os.environ, "RECSYS_PROGRESS": "0"}
    failed = []
    for name in names:
        small, large = PLAN[name]
        cmd = [
            sys.executable,
            "-m",
            f"benchmarks.{name}",
            *(large if args.size == "large" else small),
        ]
        cmd += ["--json", os.path.join(args.out, f"{name}.json")]
        if args.record:
            cmd.append("--record")
        print(f"==> {' '.join(cmd[1:])}", flush=True)
        t = time.perf_counter()
        if subprocess.run(cmd, cwd=REPO, env=env).returncode != 0:
            failed.append(name)
        print(f"<== {name}: {time.perf_counter() - t:.0f} s", flush=True)
    subprocess.run(
        [sys.executable, "-m", "benchmarks.plots", "--dir", args.out], cwd=REPO, check=False
    )
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
