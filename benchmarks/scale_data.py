"""Scale benchmark of the data path: generate → import → Dataset.load, seconds and peak RSS.

    python -m benchmarks.scale_data [--sizes 10k,100k,1M] [--per-user 10] [--record]
                                    [--note TEXT]

For each size N (items): N items, N users and ``per-user × N`` interactions with impressions,
from the synthetic source. Each stage runs in a fresh subprocess, so its peak RSS
(VmHWM) is its own; "before" is the RSS once its libraries are imported:

* **generate**: ``write_synthetic`` streams items.csv, users.csv, interactions.csv to disk.
* **import**: a FULL import of the three files (checksum, parse, row rules, dedupe, upsert,
  external sort, Parquet snapshot, manifest) on local storage; the landing files are links.
* **load**: ``Dataset.load`` as training calls it (IMPRESSION left on disk) plus
  ``item_codes`` and ``user_codes``.

Prints a Markdown table and how time and the memory above "before" grew from one size to the
next; ``--record`` appends it with the command, machine and load average to
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def _rss_mb() -> float:
    from benchmarks.common import peak_rss_mib

    return peak_rss_mib()


def worker(kind: str, args: list[str]) -> dict:
    if kind == "generate":
        from recsys.data.sources.synthetic import write_synthetic

        out, n, per_user = args[0], int(args[1]), int(args[2])
        base = _rss_mb()
        t = time.perf_counter()
        paths = write_synthetic(out, n_users=n, n_items=n, n_interactions=per_user * n)
        seconds = time.perf_counter() - t
        sizes = {k: p.stat().st_size for k, p in paths.items()}
        return {"seconds": seconds, "base": base, "peak": _rss_mb(), "bytes": sizes}
    if kind == "import":
        from recsys.data.imports import run_import
        from recsys.schema import DatasetGroup
        from recsys.storage import Storage

        root, source = args
        storage = Storage(root)
        for dtype in ("interactions", "items", "users"):
            path = Path(storage.path(f"landing/synthetic/{dtype}/{dtype}.csv"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(Path(source) / f"{dtype}.csv")
        group = DatasetGroup.load("synthetic")
        base = _rss_mb()
        t = time.perf_counter()
        manifest = run_import(storage, group, "2024-03-31")
        info = manifest["datasets"]["interactions"]
        return {
            "seconds": time.perf_counter() - t,
            "base": base,
            "peak": _rss_mb(),
            "snapshot_id": manifest["snapshot_id"],
            "rows": info["rows"],
            "duplicates": info["duplicates_or_replaced"],
            "rejected": info["rejected"],
        }
    if kind == "load":
        from recsys.data.dataset import Dataset
        from recsys.storage import Storage

        root, snapshot_id = args
        base = _rss_mb()
        t = time.perf_counter()
        data = Dataset.load(
            Storage(root), "synthetic", snapshot_id, exclude_columns=("IMPRESSION",)
        )
        _ = data.item_codes, data.user_codes
        return {
            "seconds": time.perf_counter() - t,
            "base": base,
            "peak": _rss_mb(),
            "rows": len(data.interactions),
            "items": data.n_items,
            "users": data.n_users,
        }
    raise SystemExit(f"unknown worker {kind}")


def _run_worker(kind: str, *args: str) -> dict:
    env = {**os.environ, "RECSYS_PROGRESS": "0", "PYTHONPATH": str(REPO)}
    env.setdefault("RECSYS_CONFIG_DIR", str(REPO / "configs"))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale_data", "--worker", kind, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,100k,1M", help="item counts (users = items)")
    parser.add_argument("--per-user", type=int, default=10, help="interactions per user")
    parser.add_argument("--record", action="store_true", help="append to docs/BENCHMARKS.md")
    parser.add_argument("--note", default="", help="added to the recorded entry")
    parser.add_argument(
        "--workdir",
        help="keep the CSVs and snapshots under WORKDIR/{size} (default: temp, deleted)",
    )
    parser.add_argument("--json", help="also write the results here (for the plots)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1:])))
        return 0

    sizes = [parse_size(s) for s in args.sizes.split(",")]
    load_before = _load_average()
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="recsys-bench-scale-") as tmp:
            where = Path(args.workdir) / _label(n) if args.workdir else Path(tmp)
            source, root = where / "csv", where / "store"
            if root.exists():
                raise SystemExit(f"{root} exists: give an empty --workdir")
            gen = _run_worker("generate", str(source), str(n), str(args.per_user))
            imp = _run_worker("import", str(root), str(source))
            load = _run_worker("load", str(root), imp["snapshot_id"])
        assert imp["rows"] + imp["duplicates"] == args.per_user * n, imp
        assert load["rows"] == imp["rows"] and load["users"] == n, load
        rows.append((n, gen, imp, load))
        print(
            f"{_label(n)}: generate {gen['seconds']:.1f} s, import {imp['seconds']:.1f} s, "
            f"load {load['seconds']:.1f} s",
            flush=True,
        )
    load_after = _load_average()

    lines = [
        f"Data: synthetic, N items = N users, {args.per_user} interactions per user (with "
        "IMPRESSION slates of 3–8 items), items with GENRES/PRICE/CREATION_TIMESTAMP/TITLE. "
        "Peak = the subprocess's VmHWM; before = after its imports.",
        "",
        "| items = users | interactions | CSV MiB | generate s | generate peak MiB | "
        "import s | import peak MiB | load s | load peak MiB | before (gen/imp/load) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, gen, imp, load in rows:
        mib = sum(gen["bytes"].values()) / 2**20
        lines.append(
            f"| {n:,} | {args.per_user * n:,} | {mib:,.0f} | {gen['seconds']:.1f} | "
            f"{gen['peak']:,.0f} | {imp['seconds']:.1f} | {imp['peak']:,.0f} | "
            f"{load['seconds']:.1f} | {load['peak']:,.0f} | "
            f"{gen['base']:,.0f}/{imp['base']:,.0f}/{load['base']:,.0f} |"
        )
    growth = []
    for (n0, *a), (n1, *b) in zip(rows, rows[1:], strict=False):
        parts = []
        for name, x, y in zip(("generate", "import", "load"), a, b, strict=True):
            t = y["seconds"] / x["seconds"]
            m0, m1 = x["peak"] - x["base"], y["peak"] - y["base"]
            parts.append(f"{name} time ×{t:.1f}, memory above before ×{m1 / max(m0, 1):.1f}")
        growth.append(f"- {_label(n0)} → {_label(n1)} (×{n1 / n0:g} data): " + "; ".join(parts))
    lines += ["", "Growth:", *growth] if growth else []
    lines.append("")
    lines.append(f"Load average (1/5/15 min) before: {load_before}; after: {load_after}.")
    text = "\n".join(lines)
    print(text)
    if args.json:
        from benchmarks.common import write_json

        write_json(
            args.json,
            "scale_data",
            {
                "rows": [
                    {
                        "items": n,
                        "interactions": args.per_user * n,
                        "generate_s": gen["seconds"],
                        "import_s": imp["seconds"],
                        "load_s": load["seconds"],
                        "import_peak_mib": imp["peak"],
                        "load_peak_mib": load["peak"],
                    }
                    for n, gen, imp, load in rows
                ]
            },
        )
    if args.record:
        from benchmarks.common import record

        skip = {"--note", args.note, "--workdir", args.workdir}
        argv_kept = [a for a in (sys.argv[1:] if argv is None else argv) if a not in skip]
        record("Scale: streaming data path", "benchmarks.scale_data", argv_kept, text, args.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
