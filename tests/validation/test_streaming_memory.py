"""Memory: validating 2M interactions batch by batch needs much less than one whole frame.

Each validation runs in a fresh interpreter, so its peak RSS (``VmHWM``) is its own; the
base is taken after great-expectations is imported. On 2M interactions (200k users) the
batches took 230 MiB over the base here; the whole file as one batch (BATCH_ROWS beyond the
file) 422 MiB, and the whole-frame validation this replaced 391 MiB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.data.imports import run_import, snapshot_prefix
from recsys.data.stream import ROW_GROUP_ROWS, snapshot_frame_schema
from recsys.schema import DatasetGroup
from recsys.storage import Storage
from tests.conftest import write_drop

REPO = Path(__file__).resolve().parents[2]
ROWS = 2_000_000

CHILD = r"""
import json, sys, time
from recsys.schema import DatasetGroup
from recsys.storage import Storage
from recsys.validation import checks
from recsys.validation.suites import _gx

def peak_mib():
    # VmHWM, not ru_maxrss: the latter keeps the forking parent's size across exec.
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024

root, sid, batch_rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
checks.BATCH_ROWS = batch_rows
_gx()
base = peak_mib()
t = time.perf_counter()
report = checks.validate_snapshot(Storage(root), DatasetGroup.load("synthetic"), sid)
minimum = next(c for c in report["checks"] if c["check"] == "interactions.minimum_data")
out = {"passed": report["passed"], "rows": minimum["interactions"], "base_mib": base,
       "peak_mib": peak_mib(), "seconds": time.perf_counter() - t}
print("RESULT " + json.dumps(out))
"""


def run_child(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RECSYS_PROGRESS": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, timeout=300
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, f"child failed:\n{proc.stderr[-3000:]}"
    return json.loads(line[len("RESULT ") :])


def big_snapshot(root: Path) -> str:
    """An imported snapshot whose interactions file is replaced by ROWS valid random rows."""
    storage = Storage(str(root))
    group = DatasetGroup.load("synthetic")
    lines = [f"u{u},i{u % 50},{1704067200 + k},click,1\n" for u in range(50) for k in range(20)]
    header = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n"
    write_drop(storage, "synthetic", "interactions", "2024-01-01", header + "".join(lines))
    sid = run_import(storage, group, "2024-01-02")["snapshot_id"]
    rng = np.random.default_rng(0)
    _, schema = snapshot_frame_schema(group.schemas["interactions"])
    events = pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, 2, ROWS).astype(np.int8)), pa.array(["click", "purchase"])
    )
    columns = {
        "USER_ID": pa.array(np.char.add("user", rng.integers(0, 200_000, ROWS).astype(str))),
        "ITEM_ID": pa.array(np.char.add("item", rng.integers(0, 20_000, ROWS).astype(str))),
        "TIMESTAMP": pa.array(np.sort(rng.integers(1_600_000_000, 1_700_000_000, ROWS))),
        "EVENT_TYPE": events.cast(pa.string()),
        "EVENT_VALUE": pa.array(rng.random(ROWS)),
        "IMPRESSION": pa.nulls(ROWS, pa.string()),
    }
    table = pa.table({f.name: columns[f.name].cast(f.type) for f in schema}, schema=schema)
    path = storage.path(f"{snapshot_prefix('synthetic', sid)}/interactions.parquet")
    pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)
    return sid


@pytest.mark.slow
def test_streamed_validation_needs_less_than_the_whole_frame(tmp_path) -> None:
    sid = big_snapshot(tmp_path)
    streamed = run_child(str(tmp_path), sid, str(ROW_GROUP_ROWS))
    whole = run_child(str(tmp_path), sid, str(10**9))
    assert streamed["passed"] and whole["passed"]
    assert streamed["rows"] == whole["rows"] == ROWS
    used, whole_used = (r["peak_mib"] - r["base_mib"] for r in (streamed, whole))
    assert 0 < used < 320, streamed  # 230 MiB here
    assert used < 0.8 * whole_used, (streamed, whole)  # one batch: 422 MiB here
