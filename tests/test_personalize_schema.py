"""Personalize schema JSON files as a dataset group's schemas (YAML reference or `create`)."""

from __future__ import annotations

import json

import pytest

from recsys.cli import main
from recsys.errors import ConfigError
from recsys.schema import DatasetGroup

NS = "com.amazonaws.personalize.schema"
INTERACTIONS = {
    "type": "record",
    "name": "Interactions",
    "namespace": NS,
    "fields": [
        {"name": "USER_ID", "type": "string"},
        {"name": "ITEM_ID", "type": "string"},
        {"name": "EVENT_TYPE", "type": "string"},
        {"name": "EVENT_VALUE", "type": ["null", "float"]},
        {"name": "TIMESTAMP", "type": "long"},
    ],
    "version": "1.0",
}
ITEMS = {
    "type": "record",
    "name": "Items",
    "namespace": NS,
    "fields": [
        {"name": "ITEM_ID", "type": "string"},
        {"name": "GENRES", "type": ["null", "string"], "categorical": True},
        {"name": "DESCRIPTION", "type": ["null", "string"], "textual": True},
    ],
    "version": "1.0",
}


@pytest.fixture
def configs(tmp_path, monkeypatch):
    root = tmp_path / "configs"
    (root / "dataset_groups" / "personalize").mkdir(parents=True)
    monkeypatch.setenv("RECSYS_CONFIG_DIR", str(root))
    return root


def _write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj, indent=2))
    return path


def test_yaml_references_schema_files(configs):
    folder = configs / "dataset_groups"
    _write(folder / "personalize" / "interactions.json", INTERACTIONS)
    _write(folder / "personalize" / "items.json", ITEMS)
    (folder / "shop.yaml").write_text(
        "event_types: [click]\nschemas:\n"
        "  interactions: personalize/interactions.json\n"
        "  items: {file: personalize/items.json}\n"
    )
    group = DatasetGroup.load("shop")
    assert group.schemas["interactions"].names == [f["name"] for f in INTERACTIONS["fields"]]
    genres = group.schemas["items"].field("GENRES")
    assert genres.nullable and genres.categorical and genres.type == "string"
    assert group.schemas["items"].field("DESCRIPTION").textual
    assert group.event_types == ("click",)

    # The digest (part of every snapshot id) follows the files' content, not their place.
    digest = group.digest()
    (folder / "moved").mkdir()
    _write(folder / "moved" / "items.json", ITEMS)
    text = (folder / "shop.yaml").read_text()
    (folder / "shop.yaml").write_text(text.replace("personalize/items.json", "moved/items.json"))
    assert DatasetGroup.load("shop").digest() == digest
    changed = {**ITEMS, "fields": ITEMS["fields"][:2]}
    _write(folder / "moved" / "items.json", changed)
    assert DatasetGroup.load("shop").digest() != digest


def test_create_from_schema_files(configs, tmp_path, capsys):
    inter = _write(tmp_path / "interactions-schema.json", INTERACTIONS)
    items = _write(tmp_path / "items-schema.json", ITEMS)
    argv = ["dataset-group", "create", "--name", "shop", "--interactions-schema", str(inter),
            "--items-schema", str(items), "--event-types", "click, purchase"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(configs / "dataset_groups" / "shop.yaml")
    assert out["datasets"]["items"] == ["ITEM_ID", "GENRES", "DESCRIPTION"]
    group = DatasetGroup.load("shop")
    assert group.event_types == ("click", "purchase")
    assert group.schemas["items"].field("GENRES").categorical

    # the same schemas written inline or referenced are the same data (same digest)
    (configs / "dataset_groups" / "personalize" / "i.json").write_text(json.dumps(INTERACTIONS))
    (configs / "dataset_groups" / "personalize" / "t.json").write_text(json.dumps(ITEMS))
    (configs / "dataset_groups" / "shop2.yaml").write_text(
        "event_types: [click, purchase]\nschemas:\n"
        "  interactions: personalize/i.json\n  items: personalize/t.json\n"
    )
    assert DatasetGroup.load("shop2").digest() == group.digest()

    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*argv[:-2], "--force"]) == 0
    assert DatasetGroup.load("shop").event_types == ()
    capsys.readouterr()
    assert main(["dataset-group", "create", "--name", "../up", "--interactions-schema",
                 str(inter)]) == 2  # fmt: skip
    assert "not allowed" in capsys.readouterr().err
    assert main(["dataset-group", "create", "--name", "x", "--items-schema", str(items)]) == 2
    assert "--interactions-schema" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"type": "record",\n "fields": [}', "not valid JSON (line 2, column"),
        ({**ITEMS, "namespace": "com.example"}, "'namespace' must be"),
        ({**ITEMS, "type": "enum"}, "'type' must be \"record\""),
        ({**ITEMS, "fieldz": []}, "unknown key(s) fieldz"),
        (
            {**ITEMS, "fields": [*ITEMS["fields"], {"name": "PRICE", "type": "decimal"}]},
            "field PRICE: unsupported type 'decimal'",
        ),
        (
            {**ITEMS, "fields": [{"name": "ITEM_ID", "type": ["null", "string"]}]},
            "required field ITEM_ID cannot be nullable",
        ),
        ({**ITEMS, "fields": [{"name": "GENRES", "type": "string"}]}, "must declare ITEM_ID"),
        (
            {**ITEMS, "fields": [*ITEMS["fields"], {"name": "X", "type": ["int", "string"]}]},
            "field X: unsupported union",
        ),
    ],
)
def test_bad_schema_files_name_the_file_and_field(configs, tmp_path, capsys, content, message):
    folder = configs / "dataset_groups"
    bad = _write(folder / "personalize" / "items.json", content)
    _write(folder / "personalize" / "interactions.json", INTERACTIONS)
    (folder / "bad.yaml").write_text(
        "schemas:\n  interactions: personalize/interactions.json\n  items: personalize/items.json\n"
    )
    with pytest.raises(ConfigError) as exc:
        DatasetGroup.load("bad")
    assert message in str(exc.value) and str(bad) in str(exc.value)

    # the create command refuses the same file, naming it, with exit code 2
    inter = folder / "personalize" / "interactions.json"
    argv = ["dataset-group", "create", "--name", "bad2", "--interactions-schema", str(inter),
            "--items-schema", str(bad)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and str(bad) in err and err.count("\n") == 1
    assert not (folder / "bad2.yaml").exists()


def test_references_stay_inside_the_configs_directory(configs, tmp_path):
    outside = _write(tmp_path / "interactions.json", INTERACTIONS)
    folder = configs / "dataset_groups"
    for ref in ("../../interactions.json", str(outside)):
        (folder / "esc.yaml").write_text(f"schemas:\n  interactions: {ref}\n")
        with pytest.raises(ConfigError, match="outside the configs directory"):
            DatasetGroup.load("esc")
    (folder / "esc.yaml").write_text("schemas:\n  interactions: personalize/nope.json\n")
    with pytest.raises(ConfigError, match="no such file"):
        DatasetGroup.load("esc")
    (folder / "esc.yaml").write_text("schemas:\n  interactions: personalize/x.yaml\n")
    with pytest.raises(ConfigError, match="must be a .json path"):
        DatasetGroup.load("esc")
