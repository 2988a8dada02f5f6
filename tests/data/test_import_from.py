"""``recsys import --from``: CSVs from a data location land dated for the import that sees them."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest

from recsys.cli import main
from recsys.data.imports import read_manifest
from recsys.storage import Storage
from tests.conftest import write_drop


def _export(synthetic_data, folder, *, split_at=None):
    """Personalize-format CSVs of the synthetic data; with ``split_at``, interactions before it."""
    folder.mkdir(parents=True, exist_ok=True)
    inter = synthetic_data.interactions
    if split_at is not None:
        inter = inter[inter["TIMESTAMP"] < split_at]
    inter.to_csv(folder / "interactions.csv", index=False)
    synthetic_data.items.to_csv(folder / "items.csv", index=False)
    return inter


def _day_after_last(synthetic_data):
    ts = synthetic_data.interactions["TIMESTAMP"].max()
    return pd.to_datetime(ts, unit="s", utc=True).date() + timedelta(days=1)


def _cli(capsys, store, *argv):
    code = main(["--storage", store, *argv])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 and out.out else None), out.err


def test_import_from_a_local_folder_lands_then_imports(tmp_path, synthetic_data, capsys):
    store = str(tmp_path / "store")
    inter = _export(synthetic_data, tmp_path / "export")
    date = _day_after_last(synthetic_data)
    args = ["import", "--dataset-group", "synthetic", "--date", str(date)]

    code, out, err = _cli(capsys, store, *args, "--from", str(tmp_path / "export"))
    assert code == 0, err
    assert out["rows"] == {"interactions": len(inter), "items": len(synthetic_data.items)}
    drop = str(date - timedelta(days=1))
    landed = {e["dataset_type"]: e for e in out["landed"]}
    assert set(landed) == {"interactions", "items"}
    key = landed["interactions"]["key"]
    assert key.startswith(f"landing/synthetic/interactions/dt={drop}/interactions-")
    assert landed["interactions"]["drop_date"] == drop
    assert not landed["interactions"]["already_landed"]
    s = Storage(store)
    assert s.read_bytes(key) == (tmp_path / "export" / "interactions.csv").read_bytes()
    sources = read_manifest(s, "synthetic", out["snapshot_id"])["datasets"]["interactions"]
    assert [src["key"] for src in sources["sources"]] == [key]

    # Again: nothing lands twice, and the import finds its own snapshot.
    code, again, _ = _cli(capsys, store, *args, "--from", str(tmp_path / "export"))
    assert code == 0 and again["snapshot_id"] == out["snapshot_id"]
    assert all(e["already_landed"] for e in again["landed"])
    assert len(s.find("landing/synthetic/interactions")) == 1


def test_incremental_import_from_a_file(tmp_path, synthetic_data, capsys):
    store = str(tmp_path / "store")
    ts = synthetic_data.interactions["TIMESTAMP"]
    split = int(ts.quantile(0.8))
    first = _export(synthetic_data, tmp_path / "old", split_at=split)
    later = synthetic_data.interactions[ts >= split]
    later.to_csv(tmp_path / "new-interactions.csv", index=False)
    d1 = pd.to_datetime(split, unit="s", utc=True).date() + timedelta(days=1)
    d2 = _day_after_last(synthetic_data) + timedelta(days=1)

    code, out, err = _cli(capsys, store, "import", "--dataset-group", "synthetic",
                          "--date", str(d1), "--from", str(tmp_path / "old"))  # fmt: skip
    assert code == 0, err and out["rows"]["interactions"] == len(first)
    code, _, err = _cli(capsys, store, "validate", "--dataset-group", "synthetic",
                        "--snapshot", out["snapshot_id"])  # fmt: skip
    assert code == 0, err
    code, inc, err = _cli(
        capsys, store, "import", "--dataset-group", "synthetic", "--date", str(d2),
        "--mode", "INCREMENTAL", "--from", str(tmp_path / "new-interactions.csv"),
    )  # fmt: skip
    assert code == 0, err
    assert inc["mode"] == "INCREMENTAL"
    assert inc["rows"]["interactions"] == len(first) + len(later)
    assert inc["rows"]["items"] == len(synthetic_data.items)  # carried from the base
    assert inc["landed"][0]["drop_date"] == str(d2 - timedelta(days=1))


def test_land_only_leaves_the_import_to_the_next_run(tmp_path, synthetic_data, capsys):
    """New items during the day: landed now, imported by the next (update or nightly) run."""
    from recsys.data.imports import pending_files

    store = str(tmp_path / "store")
    _export(synthetic_data, tmp_path / "export")
    date = _day_after_last(synthetic_data)
    code, out, err = _cli(capsys, store, "import", "--dataset-group", "synthetic",
                          "--date", f"{date}T10:00", "--from", str(tmp_path / "export"),
                          "--land-only")  # fmt: skip
    assert code == 0, err
    assert "snapshot_id" not in out and len(out["landed"]) == 2
    assert not Storage(store).find("datasets")  # nothing imported
    pending = pending_files(Storage(store), "synthetic", f"{date}T12:00")
    assert pending["files"]["items"] == [e["key"] for e in out["landed"] if "items" in e["key"]]
    code, _, err = _cli(capsys, store, "import", "--dataset-group", "synthetic",
                        "--date", str(date), "--land-only")  # fmt: skip
    assert code == 2 and "give --from" in err


def test_type_from_flag_and_names_that_say_nothing(tmp_path, synthetic_data, capsys):
    store = str(tmp_path / "store")
    # a name with characters that must not reach a key, and that names no dataset type
    odd = tmp_path / "export; rm -rf ..  (2024).csv"
    synthetic_data.interactions.to_csv(odd, index=False)
    date = str(_day_after_last(synthetic_data))
    args = ["import", "--dataset-group", "synthetic", "--date", date, "--from", str(odd)]
    code, _, err = _cli(capsys, store, *args)
    assert code == 2 and "cannot tell the dataset type" in err and "--type" in err
    assert not Storage(store).find("landing")

    code, out, err = _cli(capsys, store, *args, "--type", "interactions")
    assert code == 0, err
    key = out["landed"][0]["key"]
    name = key.rsplit("/", 1)[1]
    assert name.startswith("export_rm_-rf_2024-") and name.endswith(".csv")
    assert key.count("/") == 4 and ".." not in key and " " not in key


def test_bad_input_is_refused_before_it_lands(tmp_path, synthetic_data, capsys):
    store = str(tmp_path / "store")
    date = str(_day_after_last(synthetic_data))
    bad = tmp_path / "interactions.csv"
    synthetic_data.interactions.drop(columns=["USER_ID"]).to_csv(bad, index=False)
    base = ["import", "--date", date]

    code, _, err = _cli(capsys, store, *base, "--dataset-group", "synthetic", "--from", str(bad))
    assert code == 3 and str(bad) in err and "missing required column USER_ID" in err
    assert not Storage(store).find("landing")  # nothing landed, nothing to trip over later

    code, _, err = _cli(capsys, store, *base, "--dataset-group", "../x", "--from", str(bad))
    assert code == 2 and "not allowed" in err
    code, _, err = _cli(capsys, store, *base, "--dataset-group", "synthetic",
                        "--from", str(tmp_path / "nothing-here"))  # fmt: skip
    assert code == 4 and "no .csv file" in err
    (tmp_path / "users.csv").write_text("USER_ID,SEGMENT\nu1,a\n")
    code, _, err = _cli(capsys, store, *base, "--dataset-group", "movielens",
                        "--from", str(tmp_path / "users.csv"), "--type", "items")  # fmt: skip
    assert code == 3 and "missing required column ITEM_ID" in err


def test_drop_of_the_runs_own_day_is_reported_not_skipped(tmp_path, capsys, caplog):
    store = str(tmp_path / "store")
    s = Storage(store)
    text = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,i1,1706000000,click\n"
    write_drop(s, "synthetic", "interactions", "2024-02-09", text)
    # dt=2024-02-10 holds the 10th's data: an import as of the 10th, 00:00 cannot see it
    hidden = write_drop(s, "synthetic", "interactions", "2024-02-10", text)
    code, out, err = _cli(capsys, store, "import", "--dataset-group", "synthetic",
                          "--date", "2024-02-10")  # fmt: skip
    assert code == 0, err
    assert [h["key"] for h in out["not_yet_visible"]] == [hidden]
    why = out["not_yet_visible"][0]
    assert why["visible_from"] == "2024-02-11T00:00:00+00:00"
    assert "once that day has ended" in why["why"]
    assert "landed drops not visible yet" in caplog.text

    # With nothing visible at all, the error says which drop is waiting, and why.
    code, _, err = _cli(capsys, str(tmp_path / "s2"), "import", "--dataset-group",
                        "synthetic", "--date", "2024-02-09")  # fmt: skip
    assert code == 3 and "no interactions files visible" in err
    write_drop(Storage(str(tmp_path / "s2")), "synthetic", "interactions", "2024-02-09", text)
    code, _, err = _cli(capsys, str(tmp_path / "s2"), "import", "--dataset-group",
                        "synthetic", "--date", "2024-02-09T12:00")  # fmt: skip
    assert code == 3 and "1 landed file(s) not visible yet" in err
    assert "dt=2024-02-09" in err and "2024-02-10T00:00:00+00:00" in err


@pytest.mark.parametrize("layout", ["prefix", "folder"])
def test_import_from_s3_on_the_real_server(s3_server, s3_storage, synthetic_data, layout):
    """The source is an S3 prefix (Personalize's dataLocation) and the storage is S3 too."""
    from recsys.data.landing import import_from

    client = s3_server["client"]
    src = f"{s3_storage.root.split('/', 1)[1]}-src/{layout}"
    names = ("export-interactions.csv", "export-items.csv", "other/users.csv")
    frames = (synthetic_data.interactions, synthetic_data.items, synthetic_data.users)
    for name, frame in zip(names, frames, strict=True):
        client.put_object(
            Bucket="recsys-test", Key=f"{src}/{name}", Body=frame.to_csv(index=False).encode()
        )
    location = f"s3://recsys-test/{src}/" + ("export-" if layout == "prefix" else "")
    date = _day_after_last(synthetic_data)
    out = import_from(s3_storage, "synthetic", date.isoformat(), "FULL", location)
    want = {"interactions": 3000, "items": 150}
    if layout == "folder":
        want["users"] = 120
    assert out["rows"] == want
    drop = str(date - timedelta(days=1))
    for entry in out["landed"]:
        assert entry["source"].startswith(f"s3://recsys-test/{src}/")
        assert f"/dt={drop}/" in entry["key"]
        assert s3_storage.exists(entry["key"])


def test_import_from_a_local_file_into_s3_storage(s3_storage, synthetic_data, tmp_path):
    from recsys.data.landing import import_from

    inter = _export(synthetic_data, tmp_path / "export")
    date = _day_after_last(synthetic_data)
    src = str(tmp_path / "export" / "interactions.csv")
    out = import_from(s3_storage, "synthetic", date.isoformat(), "FULL", src)
    assert out["rows"] == {"interactions": len(inter)}
    (entry,) = out["landed"]
    assert entry["source"] == src
    assert (
        s3_storage.read_bytes(entry["key"])
        == (tmp_path / "export" / "interactions.csv").read_bytes()
    )
