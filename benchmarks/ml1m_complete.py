"""Completes the MovieLens-1M rebuild with second-to-last items read from a whole SASRec file.

    python -m benchmarks.ml1m_complete REBUILD_DIR MAPPING_GIT READ_FILE OUT_DIR [--expect-chars N]

``../shared/tools/build_ml1m_sasrec.py`` cannot recover the real second-to-last item of 2,779
users (``benchmarks.ml1m_gaps`` lists them). A whole SASRec-format ``ml-1m.txt`` ("USER ITEM
ITEM ...", SASRec ids, one line per user) holds them, but stored snapshots keep files under
4 MiB and that file is bigger, so it cannot be ``fetch``ed; it can only be read page by page
(docs/BENCHMARKS.md says how it was done). READ_FILE has one line per gapped user,
``SAS_USER A X B``: the last three items of that user's line as read, where A and B are the
rebuild's last two items and X the missing one. Every line is checked before anything is
written: A and B must be the rebuild's, X a known item the user has not rated, one X per user;
``--expect-chars`` also checks the completed data's per-user text (SASRec ids, users in order up
to the last one READ_FILE names) against the source file's length, which catches a dropped or
extra digit anywhere. OUT_DIR gets ``ratings.dat`` (the same synthetic timestamps, 60 s apart
per user), ``movies.dat`` and ``users.dat``. Research data: keep it and READ_FILE outside the
repo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from benchmarks.ml1m_gaps import _lines

START = 956703932  # the build tool's first synthetic timestamp


def _read_rebuild(path: str) -> dict[str, list[tuple[str, str]]]:
    """Original user -> [(original item, rating)] in the rebuild's order."""
    users: dict[str, list[tuple[str, str]]] = {}
    with open(os.path.join(path, "ratings.dat"), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("::")
            if len(parts) != 4:
                raise SystemExit(f"{path}/ratings.dat line {n}: expected USER::ITEM::RATING::TS")
            users.setdefault(parts[0], []).append((parts[1], parts[2]))
    return users


def complete(rebuild: str, mapping: str, read_file: str, out: str, expect_chars=None) -> dict:
    item_map = dict(line.split() for line in _lines(mapping, "sas_to_original_items.txt"))
    user_map = dict(line.split() for line in _lines(mapping, "sas_to_original_users.txt"))
    sas_item = {v: k for k, v in item_map.items()}
    users = _read_rebuild(rebuild)
    found: dict[str, str] = {}
    with open(read_file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            where = f"{read_file} line {n}"
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4 or not all(p.isdigit() for p in parts):
                raise SystemExit(f"{where}: expected 'SAS_USER A X B' (four numbers): {line!r}")
            u, a, x, b = parts
            if user_map.get(u) not in users:
                raise SystemExit(f"{where}: user {u} is not in the SASRec user map or the rebuild")
            history = [sas_item.get(i, "?") for i, _ in users[user_map[u]]]
            if history[-2:] != [a, b]:
                raise SystemExit(
                    f"{where}: user {u} ends with {' '.join(history[-2:])} in the rebuild, "
                    f"not {a} {b}: misread line"
                )
            if x not in item_map or x in history:
                raise SystemExit(f"{where}: item {x} is unknown or already in user {u}'s history")
            if found.get(u, x) != x:
                raise SystemExit(f"{where}: user {u} read twice with different items")
            found[u] = x
    for u, x in found.items():
        rows = users[user_map[u]]
        rows.insert(len(rows) - 1, (item_map[x], "4"))
    if expect_chars is not None:
        last = max((int(u) for u in found), default=0)
        chars = 0
        for u in range(1, last + 1):
            seq = [sas_item[i] for i, _ in users[user_map[str(u)]]]
            chars += len(str(u)) + 1 + len(" ".join(seq)) + 1
        if chars != expect_chars:
            raise SystemExit(
                f"{read_file}: the completed users 1-{last} make {chars:,} characters, the "
                f"source file {expect_chars:,}: a number was misread (binary-search the offset)"
            )
    os.makedirs(out, exist_ok=True)
    for name in ("movies.dat", "users.dat"):
        shutil.copy(os.path.join(rebuild, name), os.path.join(out, name))
    tmp = os.path.join(out, "ratings.dat.tmp")
    rows_out = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for user, rows in users.items():
            for p, (item, rating) in enumerate(rows):
                f.write(f"{user}::{item}::{rating}::{START + p * 60}\n")
            rows_out += len(rows)
    os.replace(tmp, os.path.join(out, "ratings.dat"))
    return {"completed": len(found), "rows": rows_out}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rebuild_dir")
    p.add_argument("mapping_git")
    p.add_argument("read_file")
    p.add_argument("out_dir")
    p.add_argument("--expect-chars", type=int, default=None)
    args = p.parse_args(argv)
    if os.path.abspath(args.out_dir) == os.path.abspath(args.rebuild_dir):
        raise SystemExit("OUT_DIR must differ from REBUILD_DIR (nothing is written in place)")
    res = complete(
        args.rebuild_dir, args.mapping_git, args.read_file, args.out_dir, args.expect_chars
    )
    print(f"{res['completed']} users completed, {res['rows']:,} rows -> {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
