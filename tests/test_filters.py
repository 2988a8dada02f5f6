"""Filter expressions: parsing (valid, each kind of malformed with its position), evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.errors import DataError, FilterError
from recsys.filters import Filter, ItemTable, parse_filter_values

ITEM_IDS = np.array(["a", "b", "c", "d", "e"], dtype=object)
ITEMS = pd.DataFrame(
    {
        "ITEM_ID": ["a", "b", "c", "d"],  # e has no metadata
        "GENRES": ["Action|Crime", "Comedy", "Action", None],
        "PRICE": [10.0, 150.0, 99.5, 200.0],
    }
)


@pytest.fixture
def table():
    return ItemTable(ITEM_IDS, ITEMS)


@pytest.mark.parametrize(
    "text",
    [
        'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")',
        "INCLUDE ItemID WHERE Items.GENRES IN ($GENRE)",
        "EXCLUDE ItemID WHERE Items.PRICE > 100",
        'include itemid where Items.GENRES NOT IN ("Comedy", "Drama") and Items.PRICE <= 99.5',
        'INCLUDE ItemID WHERE Items.GENRES = "Action" OR Items.PRICE < $MAX'
        ' | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", $EVENT)',
    ],
)
def test_valid_expressions_parse(text):
    f = Filter.parse(text)
    assert f.expression == text
    assert len(f.expressions) == text.count("|") + 1


def test_parsed_structure():
    f = Filter.parse(
        'INCLUDE ItemID WHERE Items.GENRES IN ("A", $G) AND Items.PRICE < 5 OR Items.PRICE > 9'
    )
    (expr,) = f.expressions
    assert expr.action == "INCLUDE" and expr.dataset == "Items"
    assert [[c.op for c in g] for g in expr.groups] == [["IN", "<"], [">"]]
    assert f.params == {"G"}


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("", 0, "expected INCLUDE or EXCLUDE"),
        ("KEEP ItemID WHERE Items.PRICE > 1", 0, "expected INCLUDE or EXCLUDE, found 'KEEP'"),
        ("EXCLUDE UserID WHERE Items.PRICE > 1", 8, "expected ItemID"),
        ("EXCLUDE ItemID WHEN Items.PRICE > 1", 15, "expected WHERE"),
        ("EXCLUDE ItemID WHERE Users.AGE > 1", 21, "expected Items.<FIELD>"),
        ("EXCLUDE ItemID WHERE Items.PRICE ~ 1", 33, "unexpected character '~'"),
        ("EXCLUDE ItemID WHERE Items.PRICE BETWEEN 1", 33, "expected IN, NOT IN"),
        ('EXCLUDE ItemID WHERE Items.GENRES IN "a"', 37, "expected '('"),
        ('EXCLUDE ItemID WHERE Items.GENRES IN ("a"', 41, "expected ',' or ')'"),
        ("EXCLUDE ItemID WHERE Items.GENRES IN ()", 38, 'expected a "string"'),
        ('EXCLUDE ItemID WHERE Items.GENRES IN ("a)', 38, "unterminated string"),
        ('EXCLUDE ItemID WHERE Items.PRICE > "cheap"', 35, "compares numbers"),
        ("EXCLUDE ItemID WHERE Items.PRICE > 1 |", 38, "expected INCLUDE or EXCLUDE"),
        ("EXCLUDE ItemID WHERE Items.PRICE > 1 Items", 37, "expected '|', AND, OR"),
        (
            'EXCLUDE ItemID WHERE Interactions.ITEM_ID IN ("x")',
            34,
            "Interactions filters support only EVENT_TYPE",
        ),
        (
            'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE NOT IN ("x")',
            45,
            "supports only IN",
        ),
        (
            'EXCLUDE ItemID WHERE Items.PRICE > 1 AND Interactions.EVENT_TYPE IN ("x")',
            41,
            "one expression reads one dataset",
        ),
        ("EXCLUDE ItemID WHERE Items.PRICE > $", 35, "unexpected character '$'"),
    ],
)
def test_malformed_expressions_are_rejected_with_position(text, position, reason):
    with pytest.raises(FilterError) as err:
        Filter.parse(text)
    assert err.value.position == position, str(err.value)
    assert reason in err.value.reason
    assert f"at position {position}" in str(err.value)
    assert str(err.value).endswith(" " * position + "^")  # the caret under the culprit


def test_unknown_item_field_is_refused(table):
    f = Filter.parse('EXCLUDE ItemID WHERE Items.COLOR IN ("red")')
    with pytest.raises(FilterError, match="Items has no field COLOR") as err:
        f.check_fields(table.columns)
    assert err.value.position == 21


def items_of(mask):
    return [str(i) for i in ITEM_IDS[mask]]


def test_item_conditions(table):
    def included(text, values=None):
        r = Filter.parse(text).resolve(table, values or {})
        return items_of(r.include_items) if r.include_items is not None else None

    assert included('INCLUDE ItemID WHERE Items.GENRES IN ("Action")') == ["a", "c"]
    assert included('INCLUDE ItemID WHERE Items.GENRES = "Crime"') == ["a"]
    # NOT IN: items without the field match, like SQL's "not one of these"
    assert included('INCLUDE ItemID WHERE Items.GENRES NOT IN ("Action")') == ["b", "d", "e"]
    assert included("INCLUDE ItemID WHERE Items.PRICE > 100") == ["b", "d"]
    assert included("INCLUDE ItemID WHERE Items.PRICE <= 99.5") == ["a", "c"]
    assert included("INCLUDE ItemID WHERE Items.PRICE = 150") == ["b"]
    assert included(
        'INCLUDE ItemID WHERE Items.GENRES IN ("Action") AND Items.PRICE > 50 OR Items.PRICE = 150'
    ) == ["b", "c"]
    assert included("INCLUDE ItemID WHERE Items.GENRES IN ($G)", {"G": ["Comedy", "Crime"]}) == [
        "a",
        "b",
    ]
    assert included("INCLUDE ItemID WHERE Items.PRICE < $MAX", {"MAX": ["100"]}) == ["a", "c"]


def test_expressions_combine_as_personalize_documents(table):
    f = Filter.parse(
        'INCLUDE ItemID WHERE Items.GENRES IN ("Action") | INCLUDE ItemID WHERE Items.PRICE > 180'
        " | EXCLUDE ItemID WHERE Items.PRICE < 50"
        ' | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase", $E)'
    )
    r = f.resolve(table, {"E": ["return"]})
    assert items_of(r.include_items) == ["a", "c", "d"]  # A or B
    assert items_of(r.exclude_items) == ["a"]
    assert r.exclude_events == {"purchase", "return"} and r.include_events is None
    assert r.restricts


def test_expression_with_a_missing_parameter_is_left_out(table):
    f = Filter.parse(
        "INCLUDE ItemID WHERE Items.GENRES IN ($G) | EXCLUDE ItemID WHERE Items.PRICE > 100"
    )
    r = f.resolve(table, {})
    assert r.include_items is None and not r.restricts
    assert items_of(r.exclude_items) == ["b", "d"]


def test_numeric_field_with_text_value_is_a_data_error(table):
    f = Filter.parse("EXCLUDE ItemID WHERE Items.PRICE < $P")
    with pytest.raises(DataError, match="PRICE is numeric"):
        f.resolve(table, {"P": ["cheap"]})


def test_filter_values_formats():
    assert parse_filter_values({"G": '"Action","Crime"'}) == {"G": ["Action", "Crime"]}
    assert parse_filter_values({"G": ' "a\\"b" , "c" '}) == {"G": ['a"b', "c"]}
    assert parse_filter_values({"P": "100"}) == {"P": ["100"]}
    assert parse_filter_values({"G": ["x", "y"]}) == {"G": ["x", "y"]}
    assert parse_filter_values(None) == {}
    for bad in ({"G": '"a",b'}, {"G": 3}, {"bad name": "x"}, ["G"], {"G": '"a'}):
        with pytest.raises(DataError, match="filterValues"):
            parse_filter_values(bad)


def test_filter_check_with_a_dataset_group_validates_fields_as_batch_does(capsys, synthetic_data):
    import json

    from recsys.cli import main
    from recsys.filters import ItemTable, schema_item_columns
    from recsys.schema import DatasetGroup

    for group in ("movielens", "synthetic"):
        code = main(["filter", "check", "--dataset-group", group,
                     'EXCLUDE ItemID WHERE Items.GENRE IN ("Comedy")'])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "Items has no field GENRE" in err and "GENRES" in err
        ok = 'EXCLUDE ItemID WHERE Items.GENRES IN ("Comedy") AND Items.TITLE IN ($T)'
        assert main(["filter", "check", "--dataset-group", group, ok]) == 0
        assert json.loads(capsys.readouterr().out)["expression"] == ok
    # without a group only the syntax is checked
    assert main(["filter", "check", 'EXCLUDE ItemID WHERE Items.GENRE IN ("x")']) == 0
    capsys.readouterr()
    assert main(["filter", "check", "--dataset-group", "nope", "EXCLUDE ItemID WHERE"]) == 2
    capsys.readouterr()
    # the fields checked are the ones a batch of the group's snapshot has
    table = ItemTable(synthetic_data.items["ITEM_ID"].to_numpy(), synthetic_data.items)
    assert set(schema_item_columns(DatasetGroup.load("synthetic"))) == set(table.columns)
