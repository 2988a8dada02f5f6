"""The CLI starts at once: the commands and DAG tasks that never train or score leave torch out.

Each check runs in a fresh interpreter (this test process has usually imported torch already)
and asserts on ``sys.modules`` after the commands have really run against a store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pandas as pd

from recsys.cli import main
from recsys.data.sources.replay import replay
from recsys.storage import Storage
from tests.conftest import REPO

_PRELUDE = """
import contextlib, io, json, sys
from recsys.cli import main
store, date = sys.argv[1], sys.argv[2]
codes = {}
def cli(name, *argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            codes[name] = main(["--storage", store, *argv])
        except SystemExit as exc:  # --help
            codes[name] = exc.code
    return out.getvalue()
"""

_IMPORT_VALIDATE = """
cli("help", "--help")
snap = json.loads(cli("import", "import", "--dataset-group", "synthetic", "--date", date))[
    "snapshot_id"
]
cli("validate", "validate", "--dataset-group", "synthetic", "--snapshot", snap)
cli("filter", "filter", "check", "EXCLUDE ItemID WHERE Items.GENRES IN ($G)")
# the nightly DAG's import and validate tasks
from recsys import pipeline
from recsys.storage import Storage
s = Storage(store)
imp = pipeline.import_datasets("synthetic", date, "FULL", s)
val = pipeline.validate("synthetic", imp["snapshot_id"], "synthetic-popularity", s)
print("RESULT " + json.dumps({"codes": codes, "snapshot": snap, "passed": val["passed"],
    "torch": "torch" in sys.modules}))
"""

_DEPLOY_PLAN = """
version = sys.argv[3]
from recsys import pipeline
from recsys.storage import Storage
s = Storage(store)
# the nightly DAG's deploy and plan tasks
dep = pipeline.promote_version("synthetic", version, date, True, "auto", s)
spec = pipeline.plan_batch("synthetic", date, version_id=version, shards=2, storage=s)
cli("status", "campaign", "status", "synthetic")
flag = json.loads(cli("status_flag", "campaign", "status", "--campaign", "synthetic"))
cli("history", "campaign", "history", "--campaign", "synthetic")
print("RESULT " + json.dumps({"codes": codes, "deployed": dep["deployed"],
    "shards": spec["shards"], "live": flag["live"]["version_id"],
    "torch": "torch" in sys.modules}))
"""

_REPORT = """
cli("report", "report", "--campaign", "synthetic")
print("RESULT " + json.dumps({"codes": codes, "torch": "torch" in sys.modules}))
"""


def _run(code: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _PRELUDE + code, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, f"subprocess failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(line[len("RESULT ") :])


def test_cli_and_dag_paths_never_import_torch(tmp_path, synthetic_data, capsys):
    store = str(tmp_path / "store")
    last = pd.to_datetime(synthetic_data.interactions["TIMESTAMP"].max(), unit="s").date()
    replay(Storage(store), synthetic_data, "synthetic", last)
    date = str(last + timedelta(days=1))

    first = _run(_IMPORT_VALIDATE, store, date)
    assert first["codes"] == {"help": 0, "import": 0, "validate": 0, "filter": 0}
    assert first["passed"] is True
    assert first["torch"] is False

    # Training and evaluation may use torch; they run here, outside the checked processes.
    assert main(["--storage", store, "train", "--solution", "synthetic-popularity",
                 "--snapshot", first["snapshot"], "--date", date]) == 0  # fmt: skip
    version = json.loads(capsys.readouterr().out)["version_id"]
    assert main(["--storage", store, "evaluate", "--solution", "synthetic-popularity",
                 "--version-id", version]) == 0  # fmt: skip

    second = _run(_DEPLOY_PLAN, store, date, version)
    assert second["codes"] == {"status": 0, "status_flag": 0, "history": 0}
    assert second["deployed"] is True and second["shards"] == 2
    assert second["live"] == version
    assert second["torch"] is False

    # `report` reads the latest batch output: write one here, then report in a fresh process.
    assert main(["--storage", store, "batch", "--campaign", "synthetic", "--date", date]) == 0
    third = _run(_REPORT, store, date)
    assert third == {"codes": {"report": 0}, "torch": False}


def test_torch_recipes_still_resolve_by_name():
    from recsys.recipes import RECIPES, UserPersonalization, get_recipe

    assert get_recipe("user-personalization") is UserPersonalization
    assert RECIPES["personalized-ranking"].name == "personalized-ranking"
    assert set(RECIPES) >= {"popularity-count", "sims", "user-personalization"}


def test_campaign_name_forms(tmp_path, capsys):
    store = str(tmp_path / "store")
    # both forms reach the campaign (never deployed: exit 4 naming it)
    assert main(["--storage", store, "campaign", "status", "--campaign", "synthetic"]) == 4
    assert "'synthetic' has never been deployed" in capsys.readouterr().err
    assert main(["--storage", store, "campaign", "history", "synthetic"]) == 4
    capsys.readouterr()
    assert main(["--storage", store, "campaign", "status"]) == 2
    assert "give the campaign NAME" in capsys.readouterr().err
    code = main(["--storage", store, "campaign", "status", "a", "--campaign", "b"])
    assert code == 2 and "two campaign names" in capsys.readouterr().err


def test_help_starts_without_numpy():
    """``recsys --help`` imports neither the pipeline nor numpy/pandas."""
    code = (
        "import sys\nfrom recsys.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('RESULT', sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    ).stdout
    assert "RESULT []" in out
