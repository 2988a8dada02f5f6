"""docs/MIGRATING.md's worked example, run as written: Personalize CSVs and schema JSON through
``import --from``, then validate, train, evaluate, deploy and a batch job."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.conftest import REPO

DOC = REPO / "docs" / "MIGRATING.md"


def _example() -> str:
    text = DOC.read_text()
    block = re.search(
        r"<!-- worked-example:start -->\s*```bash\n(.*?)```\s*<!-- worked-example:end -->",
        text,
        re.S,
    )
    assert block, "docs/MIGRATING.md lost its worked example markers"
    return block.group(1)


def test_worked_example_runs_as_written(tmp_path):
    env = {
        **os.environ,
        "WORK": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "RECSYS_PROGRESS": "0",
    }
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _example()],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    # the group came from the schema JSON, the data from --from, dated for the import
    group = (tmp_path / "configs" / "dataset_groups" / "shop.yaml").read_text()
    assert "com.amazonaws.personalize.schema" in group and "categorical: true" in group
    store = tmp_path / "store"
    landed = sorted(p.relative_to(store).as_posix() for p in (store / "landing").rglob("*.csv"))
    assert [p.rsplit("-", 1)[0] for p in landed] == [
        "landing/shop/interactions/dt=2018-08-29/interactions",
        "landing/shop/items/dt=2018-08-29/items",
    ]
    export = REPO / "docs" / "migrating" / "export"
    snaps = list((store / "datasets" / "shop" / "snapshots").glob("*/manifest.json"))
    manifest = json.loads(snaps[0].read_text())
    want = {t: len(pd.read_csv(export / f"{t}.csv")) for t in ("interactions", "items")}
    assert {t: d["rows"] for t, d in manifest["datasets"].items()} == want

    # the batch job (its own prefix: it never moves latest) answered the three input lines,
    # filter and num_results applied
    parts = sorted((store / "batch-jobs" / "shop").glob("*/part-*.jsonl"))
    lines = [json.loads(x) for p in parts for x in p.read_text().splitlines()]
    assert [x["input"]["userId"] for x in lines] == ["1", "7", "someone-new"]
    items = pd.read_csv(export / "items.csv").fillna("")
    horror = set(items.loc[items["GENRES"].str.contains("Horror"), "ITEM_ID"].astype(str))
    for line in lines:
        recs = line["output"]["recommendedItems"]
        assert line["error"] is None and len(recs) == 10
        assert not set(recs) & horror
    seen = set(
        pd.read_csv(export / "interactions.csv").query("USER_ID == 1")["ITEM_ID"].astype(str)
    )
    assert not set(lines[0]["output"]["recommendedItems"]) & seen  # exclude_seen
    assert "campaign shop: live version" in proc.stdout
