"""The benchmark commands keep working: they run at a tiny size, check their own results, write
the JSON the plots read, and the plots come out of it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import plots, suite
from tests.conftest import REPO


def run(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_growth_exponent():
    assert plots.growth([10, 100, 1000], [2, 200, 20000]) == pytest.approx(2.0)
    assert plots.growth([1e4, 1e5], [3, 30]) == pytest.approx(1.0)


def test_batch_and_train_scale_write_json_and_the_plots_draw_it(tmp_path):
    out = run("benchmarks.batch", "--items", "600", "3000", "--repeats", "1", "--json",
              str(tmp_path / "batch.json"))  # fmt: skip
    assert "exact (sample of 32)" in out
    batch = json.loads((tmp_path / "batch.json").read_text())
    assert [r["items"] for r in batch["rows"]] == [600, 3000]
    assert all(r["mismatch"] == 0 and r["users_s"] > 0 for r in batch["rows"])

    run("benchmarks.train_scale", "--sizes", "300", "--minutes", "0.05", "--json",
        str(tmp_path / "train_scale.json"))  # fmt: skip
    scale = json.loads((tmp_path / "train_scale.json").read_text())
    row = scale["rows"][0]
    assert row["items"] == 300 and row["interactions"] == 3000 and not row["sampled"]
    assert row["targets_trained"] > 0 and row["step_s"] > 0 and row["rss_peak_gib"] > 0

    (tmp_path / "quality.json").write_text(
        json.dumps(
            {
                "models": [{"model": "popularity-count", "NDCG@10": 0.02}],
                "curve": [{"train_s": 60, "NDCG@10": 0.04}, {"train_s": 120, "NDCG@10": 0.05}],
            }
        )
    )
    printed = run("benchmarks.plots", "--dir", str(tmp_path))
    for name in ("cost_vs_catalogue.png", "quality_vs_time.png"):
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "plot_pipeline: skipped" in printed
    panels = plots.series(tmp_path)
    assert {p[0] for p in panels} >= {
        "batch inference (top-25)",
        "training (10 interactions per item)",
    }


def test_suite_refuses_an_unknown_benchmark():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.suite", "--only", "batch,nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "unknown benchmark(s) ['nope']" in out.stderr
    assert set(suite.PLAN) >= {"batch", "train_scale", "quality", "pipeline", "profile_dag"}


@pytest.mark.parametrize("name", sorted(suite.PLAN))
def test_every_suite_benchmark_takes_the_suites_arguments(name):
    """make bench passes --json (and --record) to each: a benchmark without them would fail."""
    help_text = run(f"benchmarks.{name}", "--help")
    assert "--json" in help_text and "--record" in help_text


def test_personalize_protocol_per_user_ndcg_averages_to_the_nightly_metric():
    """The paired benchmark's per-user NDCG@10 is the nightly's metric before averaging."""
    import numpy as np

    from benchmarks.personalize_protocol import ndcg10_per_user
    from recsys.evaluation.metrics import evaluate_recommendations

    rng = np.random.default_rng(3)
    recs = np.stack([rng.permutation(60)[:25] for _ in range(40)])
    recs[5, 20:] = -1  # a short list
    truth = [rng.choice(60, size=rng.integers(1, 15), replace=False) for _ in range(40)]
    per_user = ndcg10_per_user(recs, truth)
    expected = evaluate_recommendations(recs, truth, 60)[
        "normalized_discounted_cumulative_gain_at_10"
    ]
    assert per_user.mean() == pytest.approx(expected)
    assert (per_user >= 0).all() and (per_user <= 1).all() and per_user.max() > 0


def test_recipe_book_holds_out_each_users_newest_fifth():
    import pandas as pd

    from benchmarks.recipe_book import newest_fraction_split
    from recsys.data.dataset import Dataset

    rows = [("a", f"i{k}", k) for k in range(10)] + [("b", "i0", 0), ("b", "i1", 1)]
    rows += [("c", "i2", 5)]
    df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
    df["EVENT_TYPE"] = "x"
    data = Dataset(df)
    train, test = newest_fraction_split(data, 0.2)
    held = data.interactions[test]
    # a: its 2 newest of 10; b: 1 (at least one); c: none (a single interaction)
    assert sorted(map(tuple, held[["USER_ID", "ITEM_ID"]].to_numpy())) == [
        ("a", "i8"),
        ("a", "i9"),
        ("b", "i1"),
    ]
    kept = set(map(tuple, train.interactions[["USER_ID", "ITEM_ID"]].to_numpy()))
    assert len(train.interactions) == len(df) - 3
    assert not kept & {("a", "i8"), ("a", "i9"), ("b", "i1")}


def test_quality_subset_splits_the_test_users_and_its_parts_average_to_the_whole(tmp_path):
    """--subset reports NDCG@10 of the listed users and of the rest; weighted by their counts
    they give the overall number, and a list that does not split the users is refused."""
    import pandas as pd

    ratings = pd.read_csv(REPO / "data" / "ml-latest-small" / "ratings.csv")
    users = sorted(ratings["userId"].unique())
    listed = tmp_path / "listed.txt"
    listed.write_text("".join(f"{u}\n" for u in users[::3]))
    out = tmp_path / "q.json"
    run(
        "benchmarks.quality",
        "--models",
        "popularity-count,sims",
        "--subset",
        str(listed),
        "--json",
        str(out),
    )
    result = json.loads(out.read_text())
    n_listed, n_all = len(users[::3]), len(users)
    assert f"lists {n_listed} of them" in result["data"]
    for m in result["models"]:
        whole = (m["NDCG@10 listed"] * n_listed + m["NDCG@10 rest"] * (n_all - n_listed)) / n_all
        assert whole == pytest.approx(m["NDCG@10"], abs=1e-9)
        assert m["NDCG@10 listed"] != m["NDCG@10 rest"]

    everyone = tmp_path / "everyone.txt"
    everyone.write_text("".join(f"{u}\n" for u in users))
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.quality",
            "--models",
            "popularity-count",
            "--subset",
            str(everyone),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode != 0
    assert "a subset must split them" in bad.stderr and "Traceback" not in bad.stderr


def _ml1m_fixture(tmp_path):
    """A two-user rebuild (original ids) and a mapping git directory as `fetch` brings it."""
    repo = tmp_path / "mapping"
    repo.mkdir()
    # SASRec item k is original item 100 + k; SASRec user k is original user 10 + k
    (repo / "sas_to_original_items.txt").write_text(
        "".join(f"{k} {100 + k}\n" for k in range(1, 9))
    )
    (repo / "sas_to_original_users.txt").write_text("1 11\n2 12\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "maps"], check=True)
    rebuild = tmp_path / "rebuild"
    rebuild.mkdir()
    # user 1 (original 11) is gapped: SASRec items 1 2 [6 missing] 3; user 2 is whole: 4 5 7
    rows = [("11", 101, 5), ("11", 102, 3), ("11", 103, 4), ("12", 104, 2), ("12", 105, 4)]
    rows.append(("12", 107, 1))
    (rebuild / "ratings.dat").write_text(
        "".join(f"{u}::{i}::{r}::{956703932 + 60 * (n % 3)}\n" for n, (u, i, r) in enumerate(rows))
    )
    (rebuild / "movies.dat").write_text(
        "".join(f"{100 + k}::M{k} (2000)::Drama\n" for k in range(1, 9))
    )
    (rebuild / "users.dat").write_text("11::F::25::1::00000\n12::M::35::2::00000\n")
    return rebuild, repo / ".git"


def test_ml1m_complete_inserts_the_read_item_and_refuses_a_misread(tmp_path):
    """The read second-to-last item goes in before the user's last one; a line whose anchors are
    not the rebuild's, or a total length that is not the source file's, is refused in one line
    and nothing is written."""
    from benchmarks.ml1m_complete import complete

    rebuild, mapping = _ml1m_fixture(tmp_path)
    read = tmp_path / "read.txt"
    read.write_text("1 2 6 3\n")
    # the source's text of user 1 is "1 1 2 6 3\n": 10 characters
    res = complete(str(rebuild), str(mapping), str(read), str(tmp_path / "out"), expect_chars=10)
    assert res == {"completed": 1, "rows": 7}
    lines = (tmp_path / "out" / "ratings.dat").read_text().splitlines()
    assert lines[:4] == [
        "11::101::5::956703932",
        "11::102::3::956703992",
        "11::106::4::956704052",
        "11::103::4::956704112",
    ]
    assert lines[4:] == ["12::104::2::956703932", "12::105::4::956703992", "12::107::1::956704052"]
    assert (tmp_path / "out" / "movies.dat").read_text() == (rebuild / "movies.dat").read_text()

    for text, expect, message in [
        ("1 1 6 3\n", None, "read.txt line 1: user 1 ends with 2 3 in the rebuild, not 1 3"),
        ("1 2 1 3\n", None, "item 1 is unknown or already in user 1's history"),
        ("1 2 6 3\n1 2 7 3\n", None, "line 2: user 1 read twice with different items"),
        ("1 2 6\n", None, "expected 'SAS_USER A X B'"),
        ("3 2 6 3\n", None, "user 3 is not in the SASRec user map or the rebuild"),
        ("1 2 6 3\n", 11, "make 10 characters, the source file 11"),
    ]:
        read.write_text(text)
        out = tmp_path / f"bad{len(message)}"
        with pytest.raises(SystemExit) as e:
            complete(str(rebuild), str(mapping), str(read), str(out), expect_chars=expect)
        assert message in str(e.value)
        assert not (out / "ratings.dat").exists()
