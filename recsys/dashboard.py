"""What the Airflow UI's "Recsys" view shows, as plain dicts (and one HTML page).

Per campaign: the live version/revision, the deploy history (newest first), the offline
metrics of the solution's recent versions (a series over time), and the latest batch output
with its freshness. Everything is read from storage; nothing is written, so the view is
read-only by construction. The Airflow plugin (``plugins/recsys_plugin.py``) only adds
authentication and routes; this module knows nothing of Airflow.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from typing import Any

from recsys.campaigns import campaign_key, campaign_state, read_metrics
from recsys.config import config_dir
from recsys.ids import as_utc
from recsys.inference.batch import latest_key
from recsys.storage import Storage
from recsys.training import list_versions, metrics_key, read_version

# The metrics drawn on the chart (all of Personalize's metrics are in the JSON).
CHART_METRICS = (
    "normalized_discounted_cumulative_gain_at_25",
    "precision_at_25",
    "mean_reciprocal_rank_at_25",
    "coverage",
)
DEFAULT_VERSIONS = 20
# A nightly batch older than this is flagged stale (a day plus the run's own duration).
DEFAULT_STALE_AFTER_HOURS = 30.0


def list_campaigns(storage: Storage) -> list[str]:
    """Campaigns with a pointer in storage, plus those configured but never deployed."""
    stored = {n[: -len(".json")] for n in storage.list("campaigns") if n.endswith(".json")}
    base = config_dir() / "campaigns"
    configured = (
        {p.stem for p in base.iterdir() if p.suffix in (".yaml", ".yml", ".json")}
        if base.is_dir()
        else set()
    )
    return sorted(stored | configured)


def overview(
    storage: Storage,
    *,
    versions: int = DEFAULT_VERSIONS,
    stale_after_hours: float = DEFAULT_STALE_AFTER_HOURS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every campaign's :func:`campaign_view`, and where the data comes from."""
    now = now or datetime.now(UTC)
    return {
        "storage": storage.uri(),
        "generated_at": now.isoformat(timespec="seconds"),
        "campaigns": [
            campaign_view(
                storage, name, versions=versions, stale_after_hours=stale_after_hours, now=now
            )
            for name in list_campaigns(storage)
        ],
    }


def campaign_view(
    storage: Storage,
    campaign: str,
    *,
    versions: int = DEFAULT_VERSIONS,
    stale_after_hours: float = DEFAULT_STALE_AFTER_HOURS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One campaign: ``live``, ``history``, ``versions`` (metrics series) and ``batch``.

    A configured campaign that was never deployed comes back with ``deployed: False`` and
    empty parts, not as an error: the view lists it so an operator sees it is waiting.
    """
    now = now or datetime.now(UTC)
    if not storage.exists(campaign_key(campaign)):
        return {
            "campaign": campaign,
            "deployed": False,
            "solution": None,
            "live": None,
            "history": [],
            "versions": [],
            "batch": None,
        }
    state = campaign_state(storage, campaign)
    live = state["live"]
    solution = state["solution"]
    live_version = _version_summary(storage, live["solution"], live["version_id"])
    return {
        "campaign": campaign,
        "deployed": True,
        "solution": solution,
        "config": state.get("config"),
        "seq": state.get("seq"),
        "live": {
            "version_id": live["version_id"],
            "revision": live.get("revision"),
            "solution": live["solution"],
            "snapshot_id": live.get("snapshot_id"),
            "logical_date": live.get("logical_date"),
            "deployed_at": live.get("deployed_at"),
            "reason": live.get("reason"),
            "rolled_back_from": live.get("rolled_back_from"),
            "recipe": live_version.get("recipe"),
            "metrics": live_version.get("metrics"),
            "training": live_version.get("training"),
            "evaluation": _evaluation_summary(storage, live["solution"], live["version_id"]),
        },
        "decision": _latest_decision(storage, campaign),
        "history": [_history_entry(e) for e in reversed(state.get("history", []))],
        "versions": recent_versions(storage, solution, live["version_id"], limit=versions),
        "batch": batch_freshness(storage, campaign, stale_after_hours=stale_after_hours, now=now),
    }


def _history_entry(entry: dict[str, Any]) -> dict[str, Any]:
    decision = entry.get("decision") or {}
    return {
        "version_id": entry["version_id"],
        "revision": entry.get("revision"),
        "logical_date": entry.get("logical_date"),
        "deployed_at": entry.get("deployed_at"),
        "reason": entry.get("reason"),
        "rolled_back_from": entry.get("rolled_back_from"),
        "gate": decision.get("reason"),
    }


def _version_summary(storage: Storage, solution: str, version_id: str) -> dict[str, Any]:
    version = read_version(storage, solution, version_id)
    return {
        "version_id": version_id,
        "logical_date": version.get("logical_date"),
        "created_at": version.get("created_at"),
        "recipe": version.get("recipe"),
        "training_mode": version.get("training_mode"),
        "training_interactions": version.get("training_interactions"),
        "training_seconds": version.get("training_seconds"),
        "metrics": _finite(read_metrics(storage, solution, version_id)),
        "training": {
            k: v for k, v in (version.get("training") or {}).items() if k != "validation_curve"
        },
    }


def _evaluation_summary(storage: Storage, solution: str, version_id: str) -> dict | None:
    """Challenger, champion and popularity side by side: {role: {metric: interval}}, n."""
    key = metrics_key(solution, version_id)
    if not storage.exists(key):
        return None
    ev = storage.read_json(key)
    return {
        "n": (ev.get("holdout") or {}).get("users"),
        "arms": {
            role: {"n": arm["n"], "metrics": arm["metrics"], "coverage": arm["coverage"]}
            for role, arm in (ev.get("arms") or {}).items()
        },
        "paired": ev.get("paired") or {},
        "meanings": ev.get("meanings") or {},
        "reason": ev.get("reason"),
    }


def _latest_decision(storage: Storage, campaign: str) -> dict | None:
    from recsys.report import latest_decision

    d = latest_decision(storage, campaign)
    if d is None:
        return None
    keep = ("version_id", "logical_date", "decided_at", "deploy", "reason", "mode", "checks")
    return {k: d.get(k) for k in keep}


def _finite(metrics: dict[str, Any] | None) -> dict[str, float | None] | None:
    """NaN/inf become None: JSON has no NaN, and a chart must skip the point, not plot it."""
    if metrics is None:
        return None
    out: dict[str, float | None] = {}
    for name, value in metrics.items():
        v = float(value) if isinstance(value, int | float) else None
        out[name] = v if v is not None and math.isfinite(v) else None
    return out


def recent_versions(
    storage: Storage, solution: str, live_version_id: str | None = None, *, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest ``limit`` complete versions of ``solution``, oldest first (a time series)."""
    ids = list_versions(storage, solution)[-limit:] if limit > 0 else []
    out = []
    for vid in ids:
        summary = _version_summary(storage, solution, vid)
        summary["live"] = vid == live_version_id
        out.append(summary)
    return out


def batch_freshness(
    storage: Storage,
    campaign: str,
    *,
    stale_after_hours: float = DEFAULT_STALE_AFTER_HOURS,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """The ``latest`` batch: where it is, what it holds, and how old it is (None if none)."""
    key = latest_key(campaign)
    if not storage.exists(key):
        return None
    latest = storage.read_json(key)
    manifest = storage.read_json(latest["manifest"]) if storage.exists(latest["manifest"]) else {}
    now = now or datetime.now(UTC)
    age_hours = (now - as_utc(latest["updated_at"])).total_seconds() / 3600
    return {
        "batch_id": latest["batch_id"],
        "uri": latest.get("uri") or storage.uri(latest["prefix"]),
        "version_id": latest.get("version_id"),
        "logical_date": latest.get("logical_date"),
        "updated_at": latest["updated_at"],
        "users": manifest.get("users"),
        "errors": manifest.get("errors"),
        "cold_start": manifest.get("cold_start"),
        "shards": manifest.get("shards"),
        "complete": storage.exists(f"{latest['prefix']}/_SUCCESS"),
        "age_hours": round(age_hours, 2),
        "stale": age_hours > stale_after_hours,
        "stale_after_hours": stale_after_hours,
    }


# -- HTML -----------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2rem;color:#1a202c}
h1{font-size:1.4rem;margin:0 0 .3rem} h2{font-size:1.2rem;margin:1.6rem 0 .4rem}
h3{font-size:1rem;margin:1rem 0 .3rem} .muted{color:#718096;font-size:.85rem}
table{border-collapse:collapse;font-size:.85rem;margin:.3rem 0}
th,td{border:1px solid #e2e8f0;padding:.25rem .5rem;text-align:left}
th{background:#f7fafc} code{font-size:.8rem}
.ok{color:#276749;font-weight:600} .bad{color:#c53030;font-weight:600}
section{border:1px solid #e2e8f0;border-radius:8px;padding:.2rem 1rem 1rem;margin-bottom:1rem}
"""
_COLOURS = ("#3182ce", "#dd6b20", "#38a169", "#805ad5")


def render_html(data: dict[str, Any]) -> str:
    """The whole view as one self-contained page (inline CSS and SVG, no scripts)."""
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Recsys campaigns</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Recsys campaigns</h1>",
        f"<p class='muted'>storage <code>{e(data['storage'])}</code> · read "
        f"{e(data['generated_at'])} · JSON: <a href='api/campaigns'>api/campaigns</a></p>",
    ]
    if not data["campaigns"]:
        parts.append("<p>No campaign is configured or deployed yet.</p>")
    for view in data["campaigns"]:
        parts.append(_campaign_html(view))
    parts.append("</body></html>")
    return "".join(parts)


def _campaign_html(view: dict[str, Any]) -> str:
    e = html.escape
    out = [f"<section id='campaign-{e(view['campaign'])}'><h2>{e(view['campaign'])}</h2>"]
    if not view["deployed"]:
        out.append("<p class='muted'>Never deployed: no nightly run has passed the gate.</p>")
        out.append("</section>")
        return "".join(out)
    live = view["live"]
    revision = live["revision"] or "—"
    rolled = (
        f" (rolled back from <code>{e(live['rolled_back_from'])}</code>)"
        if live.get("rolled_back_from")
        else ""
    )
    out.append(
        f"<p>Live: <code class='live-version'>{e(live['version_id'])}</code> revision "
        f"<code>{e(revision)}</code> of <b>{e(view['solution'])}</b> "
        f"({e(str(live['recipe']))}), deployed {e(str(live['deployed_at']))} for "
        f"{e(str(live['logical_date']))}{rolled}</p>"
    )
    out.append(_batch_html(view["batch"]))
    out.append(_evaluation_html(live, view.get("decision")))
    out.append("<h3>Offline metrics of recent solution versions</h3>")
    out.append(metrics_chart_svg(view["versions"]))
    out.append(_versions_table(view["versions"]))
    out.append("<h3>Deploy history (newest first)</h3>")
    rows = "".join(
        f"<tr><td><code>{e(h['version_id'])}</code></td><td>{e(str(h['revision'] or '—'))}</td>"
        f"<td>{e(str(h['logical_date']))}</td><td>{e(str(h['deployed_at']))}</td>"
        f"<td>{e(str(h['reason'] or ''))}</td></tr>"
        for h in view["history"]
    )
    out.append(
        "<table class='history'><tr><th>version</th><th>revision</th><th>as of</th>"
        f"<th>deployed at</th><th>reason</th></tr>{rows}</table></section>"
    )
    return "".join(out)


def _evaluation_html(live: dict[str, Any], decision: dict[str, Any] | None) -> str:
    """The live version's evaluation: this version, the one live before it, popularity."""
    from recsys.report import REPORT_METRICS, ROLES, SHORT, _cell

    e = html.escape
    out = []
    t = live.get("training") or {}
    if t:
        rising = (
            " — <b class='bad'>validation was still rising</b>"
            if t.get("validation_still_rising")
            else ""
        )
        out.append(
            f"<p class='training'>Training stopped by <b>{e(str(t.get('stop_reason')))}</b> "
            f"after {e(str(t.get('epochs', '—')))} epochs{rising}</p>"
        )
    ev = live.get("evaluation")
    if ev and ev.get("arms"):
        roles = [(r, label) for r, label in ROLES if r in ev["arms"]]
        head = "".join(f"<th>{e(label)}</th>" for _, label in roles)
        rows = "".join(
            f"<tr><td title='{e(ev['meanings'].get(m, ''))}'>{e(SHORT[m])}</td>"
            + "".join(f"<td>{e(_cell(ev['arms'][r]['metrics'].get(m)))}</td>" for r, _ in roles)
            + "</tr>"
            for m in REPORT_METRICS
        )
        out.append(
            f"<h3>Evaluation when trained (served, n={e(str(ev['n']))} users, mean "
            "[95% interval])</h3>"
            f"<table class='evaluation'><tr><th>metric</th>{head}</tr>{rows}</table>"
        )
        out.append(
            "<ul class='meanings'>"
            + "".join(f"<li>{e(text)}</li>" for text in ev["meanings"].values())
            + "</ul>"
        )
    if decision:
        verdict = "deployed" if decision["deploy"] else "not deployed"
        out.append(
            f"<p class='decision'>Latest gate decision: <code>{e(decision['version_id'])}</code>"
            f" {verdict}: {e(decision['reason'])}</p>"
        )
    return "".join(out)


def _batch_html(batch: dict[str, Any] | None) -> str:
    e = html.escape
    if batch is None:
        return "<p class='bad'>No batch output yet.</p>"
    state = (
        f"<span class='bad'>stale: {batch['age_hours']:.1f} h old</span>"
        if batch["stale"]
        else f"<span class='ok'>fresh: {batch['age_hours']:.1f} h old</span>"
    )
    return (
        f"<p>Latest batch <code>{e(batch['batch_id'])}</code> — {state}; "
        f"{e(str(batch['users']))} users, {e(str(batch['errors']))} errors, "
        f"{e(str(batch['cold_start']))} cold start, {e(str(batch['shards']))} shards; as of "
        f"{e(str(batch['logical_date']))}, version <code>{e(str(batch['version_id']))}</code>"
        f"<br><code>{e(batch['uri'])}</code></p>"
    )


def _versions_table(versions: list[dict[str, Any]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(_short_metric(m))}</th>" for m in CHART_METRICS)
    rows = []
    for v in reversed(versions):
        metrics = v["metrics"] or {}
        cells = "".join(
            f"<td>{'' if metrics.get(m) is None else f'{metrics[m]:.4f}'}</td>"
            for m in CHART_METRICS
        )
        mark = " <b>(live)</b>" if v["live"] else ""
        rows.append(
            f"<tr><td><code>{e(v['version_id'])}</code>{mark}</td><td>{e(str(v['recipe']))}</td>"
            f"{cells}</tr>"
        )
    return (
        f"<table class='versions'><tr><th>version</th><th>recipe</th>{head}</tr>"
        f"{''.join(rows)}</table>"
    )


def _short_metric(name: str) -> str:
    return (
        name.replace("normalized_discounted_cumulative_gain", "NDCG")
        .replace("mean_reciprocal_rank", "MRR")
        .replace("_at_", "@")
    )


def metrics_chart_svg(versions: list[dict[str, Any]], width: int = 640, height: int = 220) -> str:
    """A line per metric over the versions (x: version order, labelled by "as of" day)."""
    e = html.escape
    points = [v for v in versions if v["metrics"]]
    if not points:
        return "<p class='muted'>No evaluated version yet.</p>"
    left, right, top, bottom = 40, 160, 10, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [
        p["metrics"][m] for p in points for m in CHART_METRICS if p["metrics"].get(m) is not None
    ]
    hi = max(values + [1e-9])
    hi = 1.0 if hi > 0.5 else hi * 1.1  # coverage reaches 1; small metrics get a closer axis

    def x(i: int) -> float:
        return left + (plot_w * i / (len(points) - 1) if len(points) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / hi)

    out = [
        f"<svg class='metrics-chart' xmlns='http://www.w3.org/2000/svg' width='{width}' "
        f"height='{height}' role='img' aria-label='offline metrics over versions'>",
        f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' fill='#fff' "
        "stroke='#cbd5e0'/>",
    ]
    for frac in (0, 0.5, 1):
        out.append(
            f"<text x='{left - 4}' y='{y(hi * frac) + 4:.1f}' font-size='10' "
            f"text-anchor='end'>{hi * frac:.2f}</text>"
        )
    for i, p in enumerate(points):
        day = str(p.get("logical_date") or p["version_id"])[:10]
        out.append(
            f"<text x='{x(i):.1f}' y='{height - 12}' font-size='9' text-anchor='middle'>"
            f"{e(day)}</text>"
        )
        if p["live"]:
            out.append(
                f"<line x1='{x(i):.1f}' x2='{x(i):.1f}' y1='{top}' y2='{top + plot_h}' "
                "stroke='#a0aec0' stroke-dasharray='3,3'><title>live</title></line>"
            )
    for k, metric in enumerate(CHART_METRICS):
        colour = _COLOURS[k % len(_COLOURS)]
        coords = [
            (x(i), y(p["metrics"][metric]), p)
            for i, p in enumerate(points)
            if p["metrics"].get(metric) is not None
        ]
        if not coords:
            continue
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy, _ in coords)
        out.append(
            f"<polyline class='series' data-metric='{e(metric)}' fill='none' "
            f"stroke='{colour}' stroke-width='2' points='{path}'/>"
        )
        for cx, cy, p in coords:
            out.append(
                f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='3' fill='{colour}'><title>"
                f"{e(p['version_id'])} {e(metric)}={p['metrics'][metric]:.4f}</title></circle>"
            )
        out.append(
            f"<text x='{width - right + 8}' y='{top + 14 + 16 * k}' font-size='11' "
            f"fill='{colour}'>{e(_short_metric(metric))}</text>"
        )
    out.append("</svg>")
    return "".join(out)


__all__ = [
    "CHART_METRICS",
    "batch_freshness",
    "campaign_view",
    "list_campaigns",
    "metrics_chart_svg",
    "overview",
    "recent_versions",
    "render_html",
]
