"""Issue 18, case 4: audit records are write-once: a rerun of validation never rewrites the
complete snapshot's validation.json (its record goes beside it)."""

from __future__ import annotations

import pytest

from recsys.data.imports import run_import
from recsys.errors import ValidationError
from recsys.schema import DatasetGroup
from recsys.validation import validate_snapshot
from tests.validation.test_checks import land


def test_rerun_keeps_the_first_validation_record(local_storage):
    group = DatasetGroup.load("synthetic")
    land(local_storage, n_users=50, per_user=20)
    sid = run_import(local_storage, group, "2024-01-02")["snapshot_id"]
    prefix = f"datasets/synthetic/snapshots/{sid}"
    validate_snapshot(local_storage, group, sid)
    first = local_storage.read_bytes(f"{prefix}/validation.json")
    first_gx = local_storage.read_bytes(f"{prefix}/gx_result.json")
    files = local_storage.find(prefix)
    # an identical rerun (same report but its time) writes nothing: same objects as before
    validate_snapshot(local_storage, group, sid)
    assert local_storage.find(prefix) == files
    assert local_storage.read_bytes(f"{prefix}/validation.json") == first
    # the rerun fails (a solution's event filter leaves no data): it must not rewrite the record
    with pytest.raises(ValidationError):
        validate_snapshot(local_storage, group, sid, event_types=("purchase",))
    assert local_storage.read_bytes(f"{prefix}/validation.json") == first
    assert local_storage.read_bytes(f"{prefix}/gx_result.json") == first_gx
    reruns = local_storage.list(f"{prefix}/validation-reruns")
    assert len(reruns) == 1
    rerun = local_storage.read_json(f"{prefix}/validation-reruns/{reruns[0]}/validation.json")
    assert rerun["passed"] is False and rerun["snapshot_id"] == sid
    assert local_storage.exists(f"{prefix}/validation-reruns/{reruns[0]}/gx_result.json")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def any_storage(request):
    return request.getfixturevalue(f"{request.param}_storage")


def test_write_once_never_overwrites(any_storage):
    assert any_storage.write_json_once("audit/a.json", {"n": 1}) is True
    assert any_storage.write_json_once("audit/a.json", {"n": 2}) is False
    assert any_storage.read_json("audit/a.json") == {"n": 1}
    assert any_storage.write_once("audit/b", b"x") is True
    assert any_storage.write_once("audit/b", b"y") is False
    assert any_storage.read_bytes("audit/b") == b"x"
