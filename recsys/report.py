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
    manifest = storage.read_json(latest["manifest"])
    shown = 0
    for part in manifest["parts"]:
        if shown >= n_users:
            break
        with storage.open(part["key"], "rt") as f:
            for line in f:
                if shown >= n_users:
                    break
                shown += 1
                out.extend(_sample(line, titles))
    if manifest.get("errors"):
        out.append(f"({manifest['errors']} input line(s) of this batch were errors)")
    return "\n".join(out)


def _sample(line: str, titles: dict[str, str]) -> list[str]:
    """One output line for the report; an error line (or a line that is not what a batch
    writes) is shown as such, never a crash."""
    try:
        rec = json.loads(line)
        inp = rec.get("input")
        user = inp.get("userId") if isinstance(inp, dict) else None
        output = rec.get("output")
        if rec.get("error") or not isinstance(output, dict):
            return [f"Input {json.dumps(inp, ensure_ascii=False)[:80]}: error: {rec.get('error')}"]
        lines = [f"User {user}:"]
        for item in (output.get("recommendedItems") or [])[:5]:
            lines.append(f"  {item:>8}  {titles.get(item, '')}")
        return lines
    except (ValueError, AttributeError, TypeError):
        return [f"(unreadable output line: {line[:80]!r})"]
