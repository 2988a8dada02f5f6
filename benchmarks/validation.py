"""Validation benchmark: throughput (rows/s) and peak memory of validating a big interactions CSV.

    python -m benchmarks.validation [--rows 10000000] [--bad-fraction 0.001] [--with-import]
                                    [--record]

Generates a synthetic interactions CSV (streaming, chunk by chunk, into a temp dir) with a small
share of bad rows (non-numeric TIMESTAMP, undeclared EVENT_TYPE, empty USER_ID), then measures,
each in a fresh subprocess so that its peak RSS is its own:

* **stream**: ``CsvReader`` over the file, every row rule applied, rejects spooled to a local
  file, good rows discarded: what validating a file costs, independent of its size.
* **import + validate** (``--with-import``): the import job (checksum, parse, quarantine,
  dedupe, Parquet snapshot) and ``validate_snapshot`` (great-expectations suites, minimum data)
  on local storage; this holds the typed dataset in memory, so it grows with the file.

Prints a Markdown table; ``--record`` appends it with the command and machine to
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

import numpy as np
import pandas as pd

from benchmarks.common import peak_rss_mib, record, write_json

REPO = Path(__file__).resolve().parent.parent
HEADER = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE,IMPRESSION\n"


def generate(path: Path, rows: int, bad_fraction: float, seed: int = 0) -> int:
    """Write ``rows`` interactions in chunks; return how many were made bad."""
    rng = np.random.default_rng(seed)
    chunk = 500_000
    bad_total = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ts = (1_700_000_000 + rng.integers(0, 90 * 86400, n)).astype(str).astype(object)
            users = "u" + pd.Series(rng.integers(0, 200_000, n)).astype(str)
            events = np.where(rng.random(n) < 0.9, "click", "purchase").astype(object)
            bad = np.flatnonzero(rng.random(n) < bad_fraction)
            kind = rng.integers(0, 3, len(bad))
            ts[bad[kind == 0]] = "yesterday"
            events[bad[kind == 1]] = "hover"
            users = users.to_numpy(dtype=object)
            users[bad[kind == 2]] = ""
            bad_total += len(bad)
            items = rng.integers(0, 50_000, (n, 3))
            frame = pd.DataFrame(
                {
                    "USER_ID": users,
                    "ITEM_ID": "i" + pd.Series(items[:, 0]).astype(str),
                    "TIMESTAMP": ts,
                    "EVENT_TYPE": events,
                    "EVENT_VALUE": rng.random(n).round(3),
                    "IMPRESSION": "i"
                    + pd.Series(items[:, 1]).astype(str)
                    + "|i"
                    + pd.Series(items[:, 2]).astype(str),
                }
            )
            frame.to_csv(f, header=False, index=False)
    return bad_total


def _rss_mb() -> float:
    return peak_rss_mib()


def worker_stream(path: str, block_mb: int) -> dict:
    from recsys.data.csvio import CsvReader, RowRules
    from recsys.schema import DatasetGroup

    group = DatasetGroup.load("synthetic")
    base = _rss_mb()
    t = time.perf_counter()
    rows = 0
    with (
        open(path, "rb") as f,
        tempfile.TemporaryFile() as rejects,
    ):
        reader = CsvReader(
            f, group.schemas["interactions"], path, RowRules.for_group(group), block_mb << 20
        )
        for chunk in reader:
            rows += len(chunk.frame)
            for r in chunk.rejects:
                rejects.write(r.raw + b"\n")
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "rows": reader.records,
        "accepted": rows,
        "rejected": reader.rejected,
        "peak_rss_mb": _rss_mb(),
        "baseline_rss_mb": base,
    }


def worker_import(path: str, rows: int) -> dict:
    from recsys.config import load_config_file
    from recsys.data.imports import run_import
    from recsys.schema import DatasetGroup
    from recsys.storage import Storage
    from recsys.validation import validate_snapshot

    raw = load_config_file("dataset_groups", "synthetic")
    group = DatasetGroup.from_dict("synthetic", raw)
    root = tempfile.mkdtemp(prefix="recsys-bench-val-")
    storage = Storage(root)
    key = "landing/synthetic/interactions/dt=2024-01-01/part-00000.csv"
    os.makedirs(os.path.dirname(storage.path(key)), exist_ok=True)
    os.symlink(path, storage.path(key))
    base = _rss_mb()
    t = time.perf_counter()
    manifest = run_import(storage, group, "2024-03-31")
    t_import = time.perf_counter() - t
    rss_import = _rss_mb()
    t = time.perf_counter()
    validate_snapshot(storage, group, manifest["snapshot_id"])
    t_validate = time.perf_counter() - t
    return {
        "import_seconds": t_import,
        "validate_seconds": t_validate,
        "snapshot_rows": manifest["datasets"]["interactions"]["rows"],
        "rejected": manifest["datasets"]["interactions"]["rejected"],
        "import_peak_rss_mb": rss_import,
        "peak_rss_mb": _rss_mb(),
        "baseline_rss_mb": base,
    }


def _run_worker(*args: str) -> dict:
    env = {**os.environ, "RECSYS_PROGRESS": "0", "PYTHONPATH": str(REPO)}
    env.setdefault("RECSYS_CONFIG_DIR", str(REPO / "configs"))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.validation", "--worker", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--bad-fraction", type=float, default=0.001)
    parser.add_argument("--block-mb", type=int, default=16)
    parser.add_argument("--with-import", action="store_true")
    parser.add_argument("--record", action="store_true", help="append to docs/BENCHMARKS.md")
    parser.add_argument("--note", default="", help="added to the recorded entry")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, path, *rest = args.worker
        out = worker_stream(path, int(rest[0])) if kind == "stream" else worker_import(path, 0)
        print(json.dumps(out))
        return 0

    with tempfile.TemporaryDirectory(prefix="recsys-bench-") as tmp:
        path = Path(tmp) / "interactions.csv"
        t = time.perf_counter()
        bad = generate(path, args.rows, args.bad_fraction)
        gen_s = time.perf_counter() - t
        size_mb = path.stat().st_size / 2**20
        print(f"generated {args.rows:,} rows ({size_mb:,.0f} MiB, {bad:,} bad) in {gen_s:.1f} s")
        stream = _run_worker("stream", str(path), str(args.block_mb))
        assert stream["rejected"] == bad, (stream["rejected"], bad)
        lines = [
            f"Data: {args.rows:,} synthetic interactions rows, {size_mb:,.0f} MiB CSV "
            f"(6 columns incl. IMPRESSION), {bad:,} bad rows ({args.bad_fraction:.1%}); "
            f"block size {args.block_mb} MiB",
            "",
            "| measurement | seconds | rows/s | MiB/s | peak RSS (MiB) | RSS before reading |",
            "|---|---|---|---|---|---|",
            f"| stream: parse + row rules + rejects | {stream['seconds']:.1f} | "
            f"{stream['rows'] / stream['seconds']:,.0f} | {size_mb / stream['seconds']:,.0f} | "
            f"{stream['peak_rss_mb']:,.0f} | {stream['baseline_rss_mb']:,.0f} |",
        ]
        imp = None
        if args.with_import:
            imp = _run_worker("import", str(path))
            assert imp["rejected"] == bad
            lines.append(
                f"| import (checksum, parse, quarantine, dedupe, Parquet) | "
                f"{imp['import_seconds']:.1f} | {args.rows / imp['import_seconds']:,.0f} | "
                f"{size_mb / imp['import_seconds']:,.0f} | {imp['import_peak_rss_mb']:,.0f} | "
                f"{imp['baseline_rss_mb']:,.0f} |"
            )
            lines.append(
                f"| validate_snapshot (GX suites + checks), {imp['snapshot_rows']:,} rows | "
                f"{imp['validate_seconds']:.1f} | "
                f"{imp['snapshot_rows'] / imp['validate_seconds']:,.0f} | | "
                f"{imp['peak_rss_mb']:,.0f} | |"
            )
    text = "\n".join(lines)
    print(text)
    write_json(args.json, "validation", {"rows": args.rows, "stream": stream, "import": imp})
    if args.record:
        skip = {"--note", args.note}
        argv_kept = [a for a in (sys.argv[1:] if argv is None else argv) if a not in skip]
        record("Validation throughput", "benchmarks.validation", argv_kept, text, args.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
