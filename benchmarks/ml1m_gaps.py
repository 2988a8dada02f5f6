"""Lists the MovieLens-1M users whose second-to-last item the SASRec rebuild could not recover.

    python -m benchmarks.ml1m_gaps GSASREC_GIT MAPPING_GIT DSMLAI_GIT OUT_FILE

``../shared/tools/build_ml1m_sasrec.py`` rebuilds the SASRec-preprocessed MovieLens-1M from
public split files. The raw ratings it can reach cover original users 1-2999 only, so for 2,779
other users (all outside gSASRec's 512 validation users) each history lacks its real
second-to-last item: in our leave-one-out the test item then follows a gap, while the validation
item (the real third-to-last) does not. The papers' numbers are on complete histories, so this
list lets ``benchmarks.quality --subset`` report the complete users apart
(docs/BENCHMARKS.md); ``benchmarks.ml1m_complete`` fills the gaps in from items read off a whole
SASRec file. Takes the same ``fetch`` git directories as the build tool and writes one original
USER_ID per line. Research data: keep the output beside the data, never in the repo.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import sys

import numpy as np


def _show(git_dir: str, path: str) -> bytes:
    out = subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"HEAD:{path}"], capture_output=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"{git_dir}: cannot read {path}: {out.stderr.decode().strip()}")
    return out.stdout


def _lines(git_dir: str, path: str) -> list[str]:
    return _show(git_dir, path).decode().split("\n")[:-1]


def gapped_users(gsasrec: str, mapping: str, dsmlai: str) -> list[str]:
    train = [line.split() for line in _lines(gsasrec, "datasets/ml1m/train/input.txt")]
    test = _lines(gsasrec, "datasets/ml1m/test/output.txt")
    item_map = dict(line.split() for line in _lines(mapping, "sas_to_original_items.txt"))
    user_map = dict(line.split() for line in _lines(mapping, "sas_to_original_users.txt"))
    sas_item = {v: k for k, v in item_map.items()}
    raw: dict[str, set] = {}
    with gzip.open(io.BytesIO(_show(dsmlai, "ratings.dat.gz")), "rt") as f:
        for line in f:
            user, item = line.split("::")[:2]
            if item in sas_item:
                raw.setdefault(user, set()).add(sas_item[item])
    # gSASRec's validation users keep their whole history in its val split (same draw as the
    # build tool and gSASRec's own split)
    val_users = {int(u) for u in np.random.RandomState(42).choice(6040, 512, replace=False)}
    out = []
    for u in range(1, len(train) + 1):
        if u in val_users:
            continue
        extra = raw.get(user_map[str(u)], set()) - set(train[u - 1]) - {test[u - 1]}
        if len(extra) != 1:
            out.append(user_map[str(u)])
    return out


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        raise SystemExit(__doc__.splitlines()[2].strip())
    users = gapped_users(*args[:3])
    with open(args[3], "w", encoding="utf-8") as f:
        f.write("".join(f"{u}\n" for u in users))
    print(f"{len(users)} users lack their second-to-last item -> {args[3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
