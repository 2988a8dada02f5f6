"""Where user-personalization trains: the device option, and a GPU when one is present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.errors import ConfigError
from recsys.recipes import TrainingOptions, UserPersonalization
from recsys.recipes.user_personalization import resolve_device
from tests.recipes.test_user_personalization import SMALL, cycle_data, next_item_accuracy


def test_auto_picks_a_gpu_only_where_torch_sees_one():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device("cpu").type == "cpu"


def test_default_device_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RECSYS_DEVICE", "cpu")
    assert TrainingOptions().device == "cpu"
    monkeypatch.delenv("RECSYS_DEVICE")
    assert TrainingOptions().device == "auto"


@pytest.mark.parametrize(
    "name, message",
    [("tpu9", "unknown device"), ("meta", "not supported")]
    + ([] if torch.cuda.is_available() else [("cuda", "torch sees no GPU")]),
)
def test_unusable_device_is_a_clear_config_error(name, message):
    with pytest.raises(ConfigError, match=message):
        resolve_device(name)
    with pytest.raises(ConfigError, match=message):
        UserPersonalization(**{**SMALL, "epochs": 1}).fit(
            cycle_data(n_users=10), TrainingOptions(device=name)
        )


def test_model_is_back_on_the_cpu_after_training():
    rec = UserPersonalization(**{**SMALL, "epochs": 2}).fit(
        cycle_data(n_users=20), TrainingOptions(seed=0, device="auto")
    )
    assert {p.device.type for p in rec.model.parameters()} == {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
@pytest.mark.parametrize("sampled", [False, True])
def test_trains_on_a_gpu_and_learns_the_sequence(sampled):
    data = cycle_data()
    hp = {**SMALL, "precision": "auto"}
    if sampled:
        hp = {**hp, "full_softmax_max_items": 0, "num_negatives": 16}
    rec = UserPersonalization(**hp).fit(data, TrainingOptions(seed=1, device="cuda"))
    assert next_item_accuracy(rec, data) > 0.85
    assert {p.device.type for p in rec.model.parameters()} == {"cpu"}
    assert np.isfinite(rec.score(np.arange(3), data.user_histories()[:3])).all()
