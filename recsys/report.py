"""A human-readable summary of a campaign: where its outputs are, how its live version was
trained and measured (challenger, champion and popularity-count side by side, with intervals
and n), the latest gate decision, and sample users' last items beside their recommendations.
"""

from __future__ import annotations

import json
from typing import Any

from recsys.campaigns import campaign_state, decisions_prefix
from recsys.data.imports import snapshot_prefix
from recsys.inference.batch import latest_key
from recsys.storage import Storage
from recsys.training import metrics_key, read_version, version_prefix

#: the rows of the side-by-side table, in order
REPORT_METRICS = (
    "normalized_discounted_cumulative_gain_at_10",
    "hit_rate_at_10",
    "precision_at_10",
    "mean_reciprocal_rank_at_25",
)
SHORT = {
    "normalized_discounted_cumulative_gain_at_10": "NDCG@10",
    "hit_rate_at_10": "HR@10",
    "precision_at_10": "precision@10",
    "mean_reciprocal_rank_at_25": "MRR@25",
}
ROLES = (("challenger", "this version"), ("champion", "live before"), ("baseline", "popularity"))


def _cell(m: dict[str, Any] | None) -> str:
    if not m or m.get("mean") is None:
        return "—"
    return f"{m['mean']:.4f} [{m['low']:.4f}, {m['high']:.4f}]"


def evaluation_lines(evaluation: dict[str, Any] | None) -> list[str]:
    """The side-by-side table of an evaluation (``metrics.json``), with what each row means."""
    if not evaluation or not evaluation.get("arms"):
        why = (evaluation or {}).get("reason", "not evaluated")
        return [f"  no evaluation: {why}"]
    arms = evaluation["arms"]
    roles = [(r, label) for r, label in ROLES if r in arms]
    n = arms["challenger"]["n"]
    holdout = evaluation.get("holdout") or {}
    out = [
        f"  holdout: {n} users, {holdout.get('truth_interactions', '?')} held-out interactions "
        f"({holdout.get('definition', evaluation.get('protocol', ''))})",
        "  served as the campaign serves them (exploration, filters, seen items out); "
        "mean [95% bootstrap interval]",
        "  " + f"{'':<14}" + "".join(f"{label:<28}" for _, label in roles),
    ]
    for m in REPORT_METRICS:
        out.append(
            "  "
            + f"{SHORT[m]:<14}"
            + "".join(f"{_cell(arms[r]['metrics'].get(m)):<28}" for r, _ in roles)
        )
    out.append(
        "  " + f"{'coverage':<14}" + "".join(f"{arms[r]['coverage']:<28.4f}" for r, _ in roles)
    )
    for name, d in (evaluation.get("paired") or {}).items():
        nd = d.get("normalized_discounted_cumulative_gain_at_10")
        if nd:
            who = name.replace("challenger_minus_", "this version − ")
            out.append(f"  paired NDCG@10, {who}: {_cell(nd)} (n={nd['n']})")
    p = arms["challenger"].get("personalize_protocol")
    if p:
        nd = p["metrics"].get("normalized_discounted_cumulative_gain_at_10")
        out.append(f"  Personalize's protocol (its 10% of users, n={p['n']}): NDCG@10 {_cell(nd)}")
    out.append("  What the numbers mean:")
    for text in (evaluation.get("meanings") or {}).values():
        out.append(f"    {text}")
    return out


def training_lines(version: dict[str, Any]) -> list[str]:
    t = version.get("training") or {}
    if not t:
        return []
    reasons = {
        "early_stop": "early stopping (validation stopped improving)",
        "budget": "the time budget (max_training_minutes)",
        "epochs": "the epoch limit",
        "closed_form": "a closed-form fit (no epochs)",
    }
    line = f"  stopped by {reasons.get(t.get('stop_reason'), t.get('stop_reason'))}"
    if t.get("epochs"):
        line += f" after {t['epochs']} epochs (best {t.get('best_epoch')})"
    if t.get("best_validation_ndcg10") is not None:
        line += f", validation NDCG@10 {t['best_validation_ndcg10']:.4f}"
    out = [line]
    if t.get("validation_still_rising"):
        out.append("  WARNING: validation was still rising: a larger budget would probably pay")
    final = version.get("final_training") or {}
    if final.get("final_epochs"):
        out.append(f"  then {final['final_epochs']} epochs on the whole snapshot")
    return out


def latest_decision(storage: Storage, campaign: str) -> dict[str, Any] | None:
    names = storage.list(decisions_prefix(campaign))
    return storage.read_json(f"{decisions_prefix(campaign)}/{names[-1]}") if names else None


def campaign_report(storage: Storage, campaign: str, n_users: int = 3) -> str:
    from recsys.campaigns import campaign_key

    if not storage.exists(campaign_key(campaign)):
        return _nothing_live(storage, campaign)
    state = campaign_state(storage, campaign)
    live = state["live"]
    version = read_version(storage, state["solution"], live["version_id"])
    vprefix = version_prefix(state["solution"], live["version_id"])
    key = metrics_key(state["solution"], live["version_id"])
    evaluation = storage.read_json(key) if storage.exists(key) else None
    latest = (
        storage.read_json(latest_key(campaign)) if storage.exists(latest_key(campaign)) else None
    )
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
    out.append(
        f"  batch (latest)   {storage.uri(latest['prefix']) if latest else '(no batch yet)'}"
    )
    out.append("")
    training = training_lines(version)
    if training:
        out.append("Training")
        out += training
        out.append("")
    out.append("Evaluation of the live version when it was trained")
    out += evaluation_lines(evaluation)
    decision = latest_decision(storage, campaign)
    if decision:
        verdict = "deployed" if decision["deploy"] else "not deployed"
        out.append("")
        out.append(f"Latest gate decision ({decision['logical_date'][:10]}, {decision['mode']})")
        out.append(f"  {decision['version_id']}: {verdict}: {decision['reason']}")
    if latest:
        out.append("")
        out += _sample_users(storage, latest, sprefix, titles, n_users)
    return "\n".join(out)


def _nothing_live(storage: Storage, campaign: str) -> str:
    """Never deployed: why not (the latest gate decision and the numbers it saw)."""
    from recsys.errors import NotFoundError

    decision = latest_decision(storage, campaign)
    if decision is None:
        raise NotFoundError(f"campaign {campaign!r} has never been deployed nor decided")
    from recsys.config import CampaignConfig

    solution = CampaignConfig.load(campaign).solution
    key = metrics_key(solution, decision["version_id"])
    evaluation = storage.read_json(key) if storage.exists(key) else None
    return "\n".join(
        [
            f"campaign {campaign}: nothing is live yet",
            "",
            f"Latest gate decision ({decision['logical_date'][:10]}, {decision['mode']})",
            f"  {decision['version_id']}: not deployed: {decision['reason']}",
            "",
            f"Evaluation of {decision['version_id']}",
            *evaluation_lines(evaluation),
        ]
    )


def _sample_users(
    storage: Storage, latest: dict[str, Any], sprefix: str, titles: dict[str, str], n: int
) -> list[str]:
    """The latest batch's first ``n`` lines: an answered user's last five items beside five
    recommendations; an error line (or a line that is not what a batch writes) shown as such,
    never a crash."""
    manifest = storage.read_json(latest["manifest"])
    raw: list[str] = []
    for part in manifest["parts"]:
        if len(raw) >= n:
            break
        with storage.open(part["key"], "rt") as f:
            for line in f:
                if len(raw) >= n:
                    break
                raw.append(line)
    parsed = [_parse(line) for line in raw]
    users = [str(rec["input"]["userId"]) for rec, _ in parsed if rec is not None]
    recent: dict[str, list[str]] = {u: [] for u in users}
    key = f"{sprefix}/interactions.parquet"
    if users and storage.exists(key):
        inter = storage.read_parquet(key, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
        mine = inter[inter["USER_ID"].astype(str).isin(users)]
        mine = mine.sort_values("TIMESTAMP", kind="stable")
        for u, group in mine.groupby(mine["USER_ID"].astype(str), observed=True):
            recent[u] = group["ITEM_ID"].astype(str).tolist()[-5:]
    out = []
    for rec, problem in parsed:
        if rec is None:
            out.append(str(problem))
            continue
        user = str(rec["input"]["userId"])
        out.append(f"User {user}:")
        left = [f"{i:>8}  {titles.get(i, '')[:40]}" for i in recent.get(user, [])]
        items = [str(i) for i in (rec["output"].get("recommendedItems") or [])[:5]]
        right = [f"{i:>8}  {titles.get(i, '')[:40]}" for i in items]
        out.append(f"  {'last five items':<52}recommended")
        for k in range(max(len(left), len(right))):
            a = left[k] if k < len(left) else ""
            b = right[k] if k < len(right) else ""
            out.append(f"  {a:<52}{b}")
    if manifest.get("errors"):
        out.append(f"({manifest['errors']} input line(s) of this batch were errors)")
    return out


def _parse(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """(an answered line, None) or (None, how to show a line that is not one)."""
    try:
        rec = json.loads(line)
        inp = rec.get("input")
        output = rec.get("output")
        if rec.get("error") or not isinstance(output, dict) or not isinstance(inp, dict):
            shown = json.dumps(inp, ensure_ascii=False)[:80]
            return None, f"Input {shown}: error: {rec.get('error')}"
        if "userId" not in inp:
            return None, f"Input {json.dumps(inp, ensure_ascii=False)[:80]}: not a user's line"
        return rec, None
    except (ValueError, AttributeError, TypeError):
        return None, f"(unreadable output line: {line[:80]!r})"
