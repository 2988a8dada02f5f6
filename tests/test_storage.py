"""Storage on a local directory and on a real S3 server: same behaviour through one API."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd
import pytest

from recsys.errors import NotFoundError, StorageError
from recsys.storage import Storage, storage_options_from_connection


@pytest.fixture(params=["local", "s3"])
def storage(request):
    if request.param == "local":
        return request.getfixturevalue("local_storage")
    return request.getfixturevalue("s3_storage")


def test_bytes_round_trip_and_checksum(storage):
    digest = storage.write_bytes("a/b/c.bin", b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert storage.read_bytes("a/b/c.bin") == b"hello"
    assert storage.exists("a/b/c.bin")
    assert not storage.exists("a/b/missing.bin")


def test_missing_object_is_not_found(storage):
    with pytest.raises(NotFoundError, match="missing.json does not exist"):
        storage.read_json("missing.json")


def test_json_parquet_tensors_round_trip(storage):
    storage.write_json("x/obj.json", {"b": 1, "a": [1.5, np.int64(2)]})
    assert storage.read_json("x/obj.json") == {"a": [1.5, 2], "b": 1}
    df = pd.DataFrame({"USER_ID": ["u1", "u2"], "TIMESTAMP": [1, 2]})
    storage.write_parquet("x/df.parquet", df)
    pd.testing.assert_frame_equal(storage.read_parquet("x/df.parquet"), df)
    arrays = {"E": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2)}
    storage.write_tensors("x/model.safetensors", arrays, {"format_version": "1"})
    loaded = storage.read_tensors("x/model.safetensors")
    assert set(loaded) == {"E", "b"}
    np.testing.assert_array_equal(loaded["E"], arrays["E"])


def test_list_find_versions_and_delete(storage):
    for v in ("20240102T000000-bb", "20240101T000000-aa"):
        storage.write_json(f"solutions/s/versions/{v}/version.json", {"v": v})
    assert storage.list_versions("solutions/s/versions") == [
        "20240101T000000-aa",
        "20240102T000000-bb",
    ]
    assert storage.list("nothing/here") == []
    assert storage.find("solutions/s") == [
        "solutions/s/versions/20240101T000000-aa/version.json",
        "solutions/s/versions/20240102T000000-bb/version.json",
    ]
    storage.write_bytes("solutions/s/versions/20240103T000000-cc/model.bin", b"partial")
    assert storage.list_versions("solutions/s/versions", marker="version.json") == [
        "20240101T000000-aa",
        "20240102T000000-bb",
    ]
    storage.delete_prefix("solutions/s/versions/20240101T000000-aa")
    assert storage.find("solutions/s/versions/20240101T000000-aa") == []
    assert storage.list_versions("solutions/s/versions", marker="version.json") == [
        "20240102T000000-bb"
    ]


def test_overwrite_replaces_whole_object(storage):
    storage.write_pointer("campaigns/c.json", {"live": "v1"})
    storage.write_pointer("campaigns/c.json", {"live": "v2"})
    assert storage.read_json("campaigns/c.json") == {"live": "v2"}


def test_local_write_leaves_no_temp_files(local_storage):
    local_storage.write_bytes("p/q.txt", b"1")
    assert os.listdir(local_storage.path("p")) == ["q.txt"]


def test_local_write_failure_keeps_previous_object(local_storage, monkeypatch):
    local_storage.write_text("p/pointer.json", "old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(StorageError, match="disk full"):
        local_storage.write_text("p/pointer.json", "new")
    monkeypatch.undo()
    assert local_storage.read_text("p/pointer.json") == "old"
    assert os.listdir(local_storage.path("p")) == ["pointer.json"]


def test_wrong_credentials_are_refused(s3_server):
    bad = Storage(
        "s3://recsys-test/x",
        {
            "key": "nobody",
            "secret": "wrong",
            "client_kwargs": {"endpoint_url": s3_server["endpoint"]},
        },
    )
    with pytest.raises((StorageError, PermissionError, OSError)):
        bad.write_bytes("k", b"1")


def test_unsupported_url():
    with pytest.raises(StorageError, match="unsupported storage URL"):
        Storage("ftp://host/x")


def test_s3_endpoint_from_environment(s3_server, monkeypatch):
    monkeypatch.setenv("RECSYS_S3_ENDPOINT_URL", s3_server["endpoint"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["secret"])
    storage = Storage("s3://recsys-test/env")
    storage.write_text("hello.txt", "hi")
    assert storage.read_text("hello.txt") == "hi"
    assert storage.uri("hello.txt") == "s3://recsys-test/env/hello.txt"


def test_storage_options_from_connection_fields():
    opts = storage_options_from_connection(
        "AK", "SK", {"endpoint_url": "http://minio:9000", "region_name": "eu-west-1"}
    )
    assert opts == {
        "key": "AK",
        "secret": "SK",
        "client_kwargs": {"endpoint_url": "http://minio:9000", "region_name": "eu-west-1"},
    }
    assert storage_options_from_connection(None, None, None) == {}
