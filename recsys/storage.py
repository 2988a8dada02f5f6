"""One root URL for everything recsys reads and writes.

The root is a local directory (the embedded default, no server) or ``s3://bucket/prefix`` on any
S3-compatible store through fsspec/s3fs. Keys are ``/``-separated paths below the root and look
the same on both. Every write puts a whole object: on S3 a PUT is atomic, on disk we write a
temporary file and ``os.replace`` it, so a reader never sees half a file. Pointer objects
(campaigns, ``latest``) are written with :meth:`Storage.write_pointer` after what they point at.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import IO, Any

import fsspec
import numpy as np
import pandas as pd

from recsys import config
from recsys.errors import ArtifactError, ConfigError, NotFoundError, StorageError


def check_key(key: str) -> str:
    """``key`` if it stays below the storage root, else :class:`ConfigError` (exit 2).

    The second wall behind :mod:`recsys.names`: an absolute key, a ``..`` segment, a
    backslash or a NUL byte could reach outside the root (or another prefix), so none is
    accepted, whatever built the key.
    """
    if not isinstance(key, str):
        raise ConfigError(f"storage key must be a string, got {type(key).__name__}")
    if key.startswith("/") or "\\" in key or "\x00" in key or ".." in key.split("/"):
        raise ConfigError(f"storage key {key[:200]!r} leaves the storage root; refused")
    return key


def _join(*parts: str) -> str:
    return posixpath.join(*[p.strip("/") for p in parts if p not in ("", None)])


class Storage:
    """Read and write objects under one root URL.

    Args:
        url: local directory path (or ``file://...``) or ``s3://bucket/prefix``; default
            ``RECSYS_STORAGE_URL``.
        storage_options: extra fsspec options (for S3: ``client_kwargs.endpoint_url``, ``key``,
            ``secret``); default from the environment.
    """

    def __init__(self, url: str | None = None, storage_options: Mapping[str, Any] | None = None):
        url = url or config.storage_url()
        protocol, _, rest = url.partition("://")
        if not rest:
            protocol, rest = "file", url
        if protocol == "file":
            rest = os.path.abspath(rest)
            self.fs = fsspec.filesystem("file")
            self.url = rest
        elif protocol in ("s3", "s3a"):
            options = dict(config.s3_storage_options())
            options.update(storage_options or {})
            # Listings must never be served from cache: pointers and versions change under us.
            options.setdefault("use_listings_cache", False)
            options["skip_instance_cache"] = True
            self.fs = _Guarded(fsspec.filesystem("s3", **options), "s3://")
            self.url = f"s3://{rest.rstrip('/')}"
            rest = rest.rstrip("/")
        else:
            raise StorageError(f"unsupported storage URL {url!r}: use a local path or s3://")
        self.protocol = "file" if protocol == "file" else "s3"
        self.root = rest

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    # -- paths ----------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """Filesystem path of ``key`` (no protocol); a key that leaves the root is refused."""
        check_key(key)
        return _join(self.root, key) if self.protocol == "s3" else os.path.join(self.root, key)

    def uri(self, key: str = "") -> str:
        """Full URL of ``key``, for messages and for readers outside recsys."""
        if self.protocol == "s3":
            return f"s3://{_join(self.root, key)}"
        return os.path.join(self.root, key) if key else self.root

    # -- queries --------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            return bool(self.fs.exists(self.path(key)))
        except OSError as exc:  # network trouble
            raise StorageError(f"cannot reach {self.uri(key)}: {exc}") from exc

    def size(self, key: str) -> int:
        try:
            return int(self.fs.size(self.path(key)))
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.uri(key)} does not exist") from exc

    def list(self, prefix: str) -> list[str]:
        """Names (not keys) of the direct children of ``prefix``, sorted; [] when absent."""
        base = self.path(prefix)
        try:
            entries = self.fs.ls(base, detail=False)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {self.uri(prefix)}: {exc}") from exc
        names = sorted({posixpath.basename(str(e).rstrip("/")) for e in entries})
        return [n for n in names if n and not n.startswith(".tmp-")]

    def find(self, prefix: str) -> list[str]:
        """Keys of every object below ``prefix`` (recursive), sorted."""
        base = self.path(prefix)
        try:
            found = [
                name
                for name, info in self.fs.find(base, detail=True).items()
                if info.get("type") != "directory"
            ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {self.uri(prefix)}: {exc}") from exc
        root = self.path("")
        keys = []
        for f in found:
            rel = (
                posixpath.relpath(str(f), root)
                if self.protocol == "s3"
                else os.path.relpath(f, root)
            )
            rel = rel.replace(os.sep, "/")
            if not posixpath.basename(rel).startswith(".tmp-"):
                keys.append(rel)
        return sorted(keys)

    def list_versions(self, prefix: str, marker: str | None = None) -> list[str]:
        """Version ids under ``prefix`` (snapshots, solution versions, batches), oldest first.

        Ids are built so that lexical order is time order (``20240105T000000-...``). With
        ``marker``, only versions holding that object (the one written last, e.g.
        ``manifest.json``) count: incomplete versions, and the empty "folders" some S3 servers
        keep after a delete, are left out.
        """
        names = self.list(prefix)
        if marker is None:
            return names
        return [n for n in names if self.exists(f"{prefix}/{n}/{marker}")]

    # -- bytes ----------------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        try:
            with self.fs.open(self.path(key), "rb") as f:
                return f.read()
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.uri(key)} does not exist") from exc
        except StorageError:
            raise
        except Exception as exc:
            if isinstance(exc, OSError) or is_transport_error(exc):
                raise StorageError(f"cannot read {self.uri(key)}: {_one_line(exc)}") from exc
            raise

    @contextmanager
    def open(self, key: str, mode: str = "rb") -> Iterator[IO[Any]]:
        """Stream an object (read modes only: writes go through the whole-object methods)."""
        if "r" not in mode:
            raise ValueError("Storage.open is for reading; use write_bytes for writes")
        try:
            f = self.fs.open(self.path(key), mode)
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.uri(key)} does not exist") from exc
        try:
            with f:
                yield f
        except (StorageError, NotFoundError):
            raise
        except Exception as exc:
            if is_transport_error(exc):
                raise StorageError(f"cannot read {self.uri(key)}: {_one_line(exc)}") from exc
            raise

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write a whole object atomically; return its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(key)
        try:
            if self.protocol == "file":
                _replace_with(path, _write_temp(path, lambda f: f.write(data)))
            else:
                self.fs.pipe_file(path, data)
        except OSError as exc:
            raise StorageError(f"cannot write {self.uri(key)}: {exc}") from exc
        return digest

    def write_stream(self, key: str, source: IO[bytes], block_size: int = 8 << 20) -> str:
        """Write a whole object from a binary file object, copied in blocks; return its sha256.

        For objects too big to hold in memory (rejected rows of a huge file). Atomic like
        :meth:`write_bytes`: a local temporary file is renamed; an S3 upload appears at close.
        """
        h = hashlib.sha256()
        path = self.path(key)

        def copy(out: IO[bytes]) -> None:
            while block := source.read(block_size):
                h.update(block)
                out.write(block)

        try:
            if self.protocol == "file":
                _replace_with(path, _write_temp(path, copy))
            else:
                with self.fs.open(path, "wb") as f:
                    copy(f)
        except StorageError:
            raise
        except Exception as exc:
            if not (isinstance(exc, OSError) or is_transport_error(exc)):
                raise
            raise StorageError(f"cannot write {self.uri(key)}: {exc}") from exc
        return h.hexdigest()

    def checksum(self, key: str, block_size: int = 8 << 20) -> tuple[str, int]:
        """sha256 and size of an object, read in blocks (never whole into memory)."""
        h = hashlib.sha256()
        size = 0
        try:
            with self.open(key) as f:
                while block := f.read(block_size):
                    h.update(block)
                    size += len(block)
        except OSError as exc:
            raise StorageError(f"cannot read {self.uri(key)}: {exc}") from exc
        return h.hexdigest(), size

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist yet: True if this call created it.

        The compare-and-swap under campaign locks. On disk: write a temporary file and
        ``os.link`` it to the key (atomic, fails if the key exists, unlike ``os.replace``). On
        S3: a conditional PUT with ``If-None-Match: *`` (AWS S3, MinIO and SeaweedFS answer
        412 Precondition Failed when the object exists).
        """
        path = self.path(key)
        try:
            if self.protocol == "file":
                tmp = _write_temp(path, lambda f: f.write(data))
                try:
                    os.link(tmp, path)  # unlike os.replace, fails when the key exists
                except FileExistsError:
                    return False
                finally:
                    os.unlink(tmp)
                return True
            try:
                self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            except OSError as exc:
                if _is_precondition_failed(exc):
                    return False
                raise
            return True
        except OSError as exc:
            raise StorageError(f"cannot create {self.uri(key)}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> None:
        """Remove everything below ``prefix`` (a rerun clearing its own run-stamped outputs)."""
        path = self.path(prefix)
        try:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete {self.uri(prefix)}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            with suppress(FileNotFoundError):
                self.fs.rm_file(self.path(key))
        except OSError as exc:
            raise StorageError(f"cannot delete {self.uri(key)}: {exc}") from exc

    # -- typed objects ---------------------------------------------------------------------
    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def write_text(self, key: str, text: str) -> str:
        return self.write_bytes(key, text.encode("utf-8"))

    def read_json(self, key: str) -> Any:
        data = self.read_bytes(key)
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.uri(key)} is not valid JSON: {exc}") from exc

    def write_json(self, key: str, obj: Any) -> str:
        return self.write_bytes(key, json_dumps(obj).encode("utf-8"))

    def write_once(self, key: str, data: bytes) -> bool:
        """Write an audit record that must never be rewritten: True if this call wrote it,
        False if ``key`` already existed (left as it was; write your own record beside it).

        Atomic create-if-absent (:meth:`create_exclusive`), so of two racing writers one wins.
        """
        return self.create_exclusive(key, data)

    def write_json_once(self, key: str, obj: Any) -> bool:
        """:meth:`write_once` for a JSON object (same stable formatting as :meth:`write_json`)."""
        return self.write_once(key, json_dumps(obj).encode("utf-8"))

    def write_pointer(self, key: str, obj: Any) -> str:
        """Write a pointer object. Call it last, after everything it points at is complete."""
        return self.write_json(key, obj)

    def read_parquet(self, key: str, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.read_bytes(key)), columns=columns)

    def write_parquet(self, key: str, df: pd.DataFrame) -> str:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
        return self.write_bytes(key, buf.getvalue())

    def write_tensors(
        self, key: str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
    ) -> str:
        """Write numpy arrays as safetensors (no pickle: safe to load from anywhere)."""
        from safetensors.numpy import save

        arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        return self.write_bytes(key, save(arrays, metadata=dict(metadata or {})))

    def read_tensors(self, key: str) -> dict[str, np.ndarray]:
        """Read a safetensors object; a malformed one is an :class:`ArtifactError` (exit 6)."""
        return load_tensors(self.read_bytes(key), self.uri(key))


def load_tensors(data: bytes, where: str) -> dict[str, np.ndarray]:
    """Parse safetensors bytes; anything malformed is an :class:`ArtifactError` naming ``where``
    (a file whose checksum matches can still be garbage: written wrong, or a forged manifest)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        return load(data)
    except (SafetensorError, ValueError, TypeError, OverflowError) as exc:
        raise ArtifactError(f"{where}: not a valid safetensors file: {_one_line(exc)}") from exc


#: Modules whose exceptions mean "the store could not be reached or refused": network, TLS,
#: credentials, throttling. They become :class:`StorageError` (exit 5; Airflow retries).
_TRANSPORT_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "urllib3", "ssl")


def is_transport_error(exc: BaseException) -> bool:
    """True for an error of the network/S3 client stack (not ours, not a missing object)."""
    if isinstance(exc, FileNotFoundError | FileExistsError):
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return any(
        (getattr(t, "__module__", "") or "").split(".")[0] in _TRANSPORT_MODULES
        for t in type(exc).__mro__
    )


class _Guarded:
    """An fsspec filesystem whose client-stack errors (botocore, aiohttp) come out as
    :class:`StorageError` naming the object, never as a traceback of the S3 client."""

    def __init__(self, fs: Any, scheme: str) -> None:
        self._fs = fs
        self._scheme = scheme

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._fs, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except StorageError:
                raise
            except Exception as exc:
                if not is_transport_error(exc) or _is_precondition_failed(exc):
                    raise
                where = f"{self._scheme}{args[0]}" if args and isinstance(args[0], str) else ""
                kind = type(exc).__name__
                what = (
                    "unreachable"
                    if isinstance(exc, ConnectionError | TimeoutError) or "Connect" in kind
                    else "refused the request"
                )
                raise StorageError(
                    f"storage {what} ({name} {where}): {kind}: {_one_line(exc)}"
                ) from exc

        return call


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:300] + "..."


def _is_precondition_failed(exc: BaseException) -> bool:
    """True for S3's answer to a conditional write whose condition failed (HTTP 412/409)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (
                409,
                412,
            ):
                return True
        if "PreconditionFailed" in str(e) or "Precondition Failed" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _write_temp(path: str, fill: Callable[[IO[bytes]], Any]) -> str:
    """A fsynced temporary file beside ``path`` filled by ``fill``; returns its path."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _replace_with(path: str, tmp: str) -> None:
    """Atomically put ``tmp`` at ``path`` (readers see the old or the new file)."""
    try:
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def json_dumps(obj: Any) -> str:
    """Stable JSON: sorted keys, indented, numpy scalars as plain numbers."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, pd.Timestamp):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def storage_options_from_connection(
    login: str | None, password: str | None, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    """fsspec S3 options from an Airflow-style AWS connection's fields.

    ``extra`` may hold ``endpoint_url`` (or ``host``), ``region_name``, ``aws_session_token``;
    this keeps Airflow out of recsys while DAGs pass a connection's values in.
    """
    extra = dict(extra or {})
    options: dict[str, Any] = {}
    if login:
        options["key"] = login
    if password:
        options["secret"] = password
    if extra.get("aws_session_token"):
        options["token"] = extra["aws_session_token"]
    client_kwargs: dict[str, Any] = {}
    endpoint = extra.get("endpoint_url") or extra.get("host")
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    if extra.get("region_name"):
        client_kwargs["region_name"] = extra["region_name"]
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options
