"""Plots from the benchmark JSON (``benchmarks.suite`` writes it): PNGs for the README.

    python -m benchmarks.plots [--dir docs/bench]

* ``cost_vs_catalogue.png``: each stage's cost against catalogue size (log-log), with the
  fitted growth exponent (cost ∝ itemsᵏ) in the legend.
* ``quality_vs_time.png``: user-personalization's test NDCG@10 against training minutes,
  beside the baselines of the same run and the reference plain SASRec+ curve.
* ``pipeline_stages.png``: where the nightly pipeline's wall time goes.

A plot whose JSON is missing is skipped (and said so).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import REPO

# The plain SASRec+ curve measured on this machine by the reference harness (BENCHMARKS.md).
SASREC_REFERENCE = [(2, 0.0195), (4, 0.0393), (8, 0.0581)]


def growth(x, y) -> float:
    """Least-squares slope of log y on log x (the k of y ∝ xᵏ)."""
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0]) if len(x) > 1 else float("nan")


def _read(directory: Path, name: str) -> dict | None:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def series(directory: Path) -> list[tuple[str, str, list[float], list[float]]]:
    """(panel title, y label, items, cost) for every stage whose JSON is present."""
    out = []
    batch = _read(directory, "batch")
    if batch:
        rows = batch["rows"]
        out.append(
            (
                "batch inference (top-25)",
                "s per 1,000 users",
                [r["items"] for r in rows],
                [1000 / r["users_s"] for r in rows],
            )
        )
        limit = batch["gemm_flops"]
        out.append(
            (
                "batch inference: compute limit",
                "s per 1,000 users",
                [r["items"] for r in rows],
                [1000 * 2 * r["items"] * (r["dim"] + 1) / limit for r in rows],
            )
        )
    scale = _read(directory, "train_scale")
    if scale:
        rows = scale["rows"]
        out.append(
            (
                "training (10 interactions per item)",
                "s per epoch",
                [r["items"] for r in rows],
                [r["targets_per_epoch"] * r["step_s"] / max(r["targets_trained"], 1) for r in rows],
            )
        )
    data = _read(directory, "scale_data")
    if data:
        rows = data["rows"]
        for stage in ("generate_s", "import_s", "load_s"):
            if all(stage in r for r in rows):
                out.append(
                    (
                        f"data: {stage[:-2]}",
                        "s",
                        [r["items"] for r in rows],
                        [r[stage] for r in rows],
                    )
                )
    cold = _read(directory, "cold_items")
    if cold and cold.get("speed"):
        rows = cold["speed"]
        out.append(
            (
                "2-hourly update: add 1,000 items",
                "s",
                [r["model_items"] for r in rows if r["new_items"] == 1000],
                [r["seconds"] for r in rows if r["new_items"] == 1000],
            )
        )
    return [s for s in out if len(s[2]) > 0]


def plot_costs(directory: Path, plt) -> str | None:
    panels = series(directory)
    if not panels:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for title, unit, x, y in panels:
        style = "--" if "limit" in title else "-o"
        ax.loglog(x, y, style, label=f"{title} [{unit}], ∝ items^{growth(x, y):.2f}")
    ax.set_xlabel("catalogue size (items)")
    ax.set_ylabel("cost (seconds, in the unit of each line)")
    ax.set_title("Cost against catalogue size (2-core machine)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    path = directory / "cost_vs_catalogue.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot_quality(directory: Path, plt) -> str | None:
    q = _read(directory, "quality")
    if not q or not q.get("curve"):
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [(c["train_s"] / 60, c["NDCG@10"]) for c in q["curve"]]
    final = [m for m in q["models"] if m["model"] == "user-personalization" and "seconds" in m]
    if final and final[0]["seconds"] / 60 > points[-1][0]:
        points.append((final[0]["seconds"] / 60, final[0]["NDCG@10"]))  # the end of training
    where = q.get("machine", "").split(",")[0]
    load = f", load {q['load']:.1f}" if "load" in q else ""
    ax.plot(*zip(*points, strict=True), "-o", label=f"user-personalization ({where}{load})")
    ax.plot(
        *zip(*SASREC_REFERENCE, strict=True),
        "--s",
        label="plain SASRec+ (reference harness, earlier AMX machine, quiet)",
    )
    for m in q["models"]:
        if m["model"] != "user-personalization":
            ax.axhline(m["NDCG@10"], ls=":", color="grey")
            ax.annotate(m["model"], (0, m["NDCG@10"]), fontsize=7, va="bottom")
    ax.set_xlabel("training time (minutes, 2 cores)")
    ax.set_ylabel("test NDCG@10 (leave-one-out)")
    ax.set_title("Quality against training time, ml-latest-small")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    path = directory / "quality_vs_time.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot_pipeline(directory: Path, plt) -> str | None:
    runs = [(n, _read(directory, n)) for n in ("pipeline", "profile_dag")]
    runs = [(n, r) for n, r in runs if r]
    if not runs:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, (name, r) in zip(axes[0], runs, strict=True):
        stages = [s for s in r["stages"] if not s["stage"].startswith("load")]
        ax.barh([s["stage"] for s in stages][::-1], [s["seconds"] for s in stages][::-1])
        ax.set_xlabel("seconds")
        ax.set_title(
            "in-process stages (benchmarks.pipeline)"
            if name == "pipeline"
            else "Airflow tasks (airflow dags test)",
            fontsize=9,
        )
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("Nightly pipeline on ml-latest-small: where the time goes")
    fig.tight_layout()
    path = directory / "pipeline_stages.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=str(REPO / "docs" / "bench"))
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(args.dir)
    for fn in (plot_costs, plot_quality, plot_pipeline):
        name = fn(directory, plt)
        print(f"{fn.__name__}: {directory / name if name else 'skipped (no JSON yet)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
