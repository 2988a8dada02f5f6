"""Importing recsys makes OpenMP workers sleep while waiting (OMP_WAIT_POLICY=PASSIVE) unless
the environment chose a policy, and it does so before torch is loaded."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

PROBE = (
    "import os, sys\n"
    "{setup}\n"
    "import recsys.recipes.user_personalization  # loads torch\n"
    "assert 'torch' in sys.modules\n"
    "print(os.environ.get('OMP_WAIT_POLICY'))\n"
)


def probe(setup: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(setup=setup)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_passive_by_default_before_torch_loads():
    # the variable is dropped inside the child (a sitecustomize may have set it already)
    assert probe("os.environ.pop('OMP_WAIT_POLICY', None)") == "PASSIVE"


def test_an_explicit_policy_wins():
    assert probe("os.environ['OMP_WAIT_POLICY'] = 'ACTIVE'") == "ACTIVE"


def test_torch_is_not_imported_by_recsys_itself():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, recsys; print('torch' in sys.modules)"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
