"""Memory caps: importing and loading a generated multi-million-row file stays bounded.

Each measurement runs in a fresh interpreter, so its peak RSS (VmHWM) is its own. The
import of 3M interactions must not need much more than the import of their first 1M: the
whole-frame import this replaced grew by ~210 bytes per row here (426 MiB from 1M to 3M rows,
measured on the same files), the streaming one holds ~16 bytes per row (a row hash and a
TIMESTAMP). Loading the 3M-row snapshot for training (categorical ids, no IMPRESSION) must fit
in a budget that the old load (the file's bytes, then a string per row) exceeded: 650 MiB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.data.sources.synthetic import write_synthetic

REPO = Path(__file__).resolve().parents[2]
ROWS = 3_000_000

CHILD = r"""
import json, os, resource, sys, time
from recsys.data.dataset import Dataset
from recsys.data.imports import run_import
from recsys.schema import DatasetGroup
from recsys.storage import Storage

def peak_mib():
    # VmHWM, not ru_maxrss: after fork + exec ru_maxrss keeps the parent's (pytest's) peak
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")

what, root = sys.argv[1], sys.argv[2]
storage = Storage(root)
group = DatasetGroup.load("synthetic")
base = peak_mib()
t = time.perf_counter()
if what == "import":
    manifest = run_import(storage, group, "2024-03-31")
    out = {"snapshot_id": manifest["snapshot_id"],
           "rows": manifest["datasets"]["interactions"]["rows"]}
else:
    data = Dataset.load(storage, "synthetic", sys.argv[3], exclude_columns=("IMPRESSION",))
    codes = data.item_codes, data.user_codes
    out = {"rows": len(data.interactions), "items": data.n_items, "users": data.n_users}
out.update(seconds=time.perf_counter() - t, base_mib=base, peak_mib=peak_mib())
print("RESULT " + json.dumps(out))
"""


def run_child(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RECSYS_PROGRESS": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, f"child failed:\n{proc.stderr[-3000:]}"
    return json.loads(line[len("RESULT ") :])


def land(root: Path, source: Path, interactions: Path) -> str:
    """A storage root whose landing area links to the generated files."""
    for dtype, path in (
        ("interactions", interactions),
        ("items", source / "items.csv"),
        ("users", source / "users.csv"),
    ):
        target = root / "landing" / "synthetic" / dtype / f"{dtype}.csv"
        target.parent.mkdir(parents=True)
        target.symlink_to(path)
    return str(root)


@pytest.mark.slow
def test_import_and_load_memory_do_not_grow_with_the_file(tmp_path) -> None:
    source = tmp_path / "gen"
    paths = write_synthetic(
        source, n_users=300_000, n_items=20_000, n_interactions=ROWS, impressions=False
    )
    first = tmp_path / "first-1m.csv"
    with open(paths["interactions"], "rb") as f, open(first, "wb") as out:
        for _ in range(1 + ROWS // 3):
            out.write(f.readline())

    small = run_child("import", land(tmp_path / "small", source, first))
    full = run_child("import", land(tmp_path / "full", source, paths["interactions"]))
    assert small["rows"] == ROWS // 3 and full["rows"] == ROWS  # no duplicates were drawn
    growth = full["peak_mib"] - small["peak_mib"]
    assert growth < 150, (small, full)  # the whole-frame import grew by 426 MiB
    assert full["peak_mib"] - full["base_mib"] < 700, full

    load = run_child("load", str(tmp_path / "full"), full["snapshot_id"])
    assert load["rows"] == ROWS and load["items"] <= 20_000 and load["users"] == 300_000
    # The load that read the file's bytes and made a string per row needed 650 MiB here.
    assert load["peak_mib"] - load["base_mib"] < 450, load
