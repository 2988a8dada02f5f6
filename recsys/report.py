"""A human-readable summary of a campaign: where its outputs are, its metrics, sample users."""

from __future__ import annotations

import json
from typing import Any

from recsys.campaigns import campaign_state
from recsys.data.imports import snapshot_prefix
from recsys.inference.batch import latest_key
from recsys.storage import Storage
from recsys.training import read_version, version_prefix


def campaign_report(storage: Storage, campaign: str, n_users: int = 3) -> str:
    state = campaign_state(storage, campaign)
    live = state["live"]
    version = read_version(storage, state["solution"], live["version_id"])
    vprefix = version_prefix(state["solution"], live["version_id"])
    metrics_key = f"{vprefix}/metrics.json"
    metrics: dict[str, Any] = (
        storage.read_json(metrics_key)["metrics"] if storage.exists(metrics_key) else {}
    )
    latest = storage.read_json(latest_key(campaign))
    sprefix = snapshot_prefix(version["dataset_group"], version["snapshot_id"])
    titles: dict[str, str] = {}
    if storage.exists(f"{sprefix}/items.parquet"):
        items = storage.read_parquet(f"{sprefix}/items.parquet")
        if "TITLE" in items.columns:
            titles = dict(
                zip(items["ITEM_ID"].astype(str), items["TITLE"].astype(str), strict=True)
            )

    out = [f"campaign {campaign}: live version {live['version_id']} ({version['recipe']})", ""]
    out.append("Outputs")
    out.append(f"  snapshot         {storage.uri(sprefix)}")
    out.append(f"  solution version {storage.uri(vprefix)}")
    out.append(f"  campaign pointer {storage.uri(f'campaigns/{campaign}.json')}")
    out.append(f"  batch (latest)   {storage.uri(latest['prefix'])}")
    out.append("")
    out.append("Offline metrics (Personalize protocol: 10% of users held out)")
    for name, value in metrics.items():
        out.append(f"  {name:<45} {value:.4f}")
    out.append("")
    first_part = storage.read_json(latest["manifest"])["parts"][0]["key"]
    with storage.open(first_part, "rt") as f:
        for _, line in zip(range(n_users), f, strict=False):
            rec = json.loads(line)
            out.append(f"User {rec['input']['userId']}:")
            for item in rec["output"]["recommendedItems"][:5]:
                out.append(f"  {item:>8}  {titles.get(item, '')}")
    return "\n".join(out)
