"""Issue 18, case 6: bad requests get their own error line and never sink the job; filters
and --num-results are bounded."""

from __future__ import annotations

import json

import pytest

from recsys.errors import DataError, FilterError
from recsys.filters import MAX_CONDITIONS, MAX_FILTER_LENGTH, Filter, parse_filter_values
from recsys.inference.batch import _error_line, parse_request
from tests.inference.test_batch import campaign, lines_of, live, run  # noqa: F401 - fixture

NESTED = "[" * 200_000 + "]" * 200_000
HOSTILE = [
    ('{"userId": "\\ud800"}', "lone surrogate"),
    ('{"userId": "u1", "itemList": ["\\udfff"]}', "lone surrogate"),
    ('{"userId": "u1", "filterValues": {"G": "\\ud800"}}', "lone surrogate"),
    ("\ud800", "not valid Unicode"),
    (NESTED, "nested deeper"),
    ('{"userId": "u1", "x": ' + "[" * 200_000, "nested deeper"),
    ('{"userId": "' + "x" * (2 << 20) + '"}', "longer than"),
    ('{"userId": "u1", "x": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}', "nested deeper"),
]


@pytest.mark.parametrize("line, message", HOSTILE)
def test_parse_request_never_raises_and_its_error_line_is_writable(line, message):
    req = parse_request(line)
    assert req.error is not None and message in req.error
    out = _error_line(req.input, req.error)
    assert json.loads(out.encode("utf-8"))["error"] == req.error  # valid UTF-8 JSON
    assert len(out) < 5000  # a huge line is not echoed whole


def test_parse_request_keeps_ordinary_unicode():
    req = parse_request('{"userId": "caf\\u00e9 \\ud83d\\ude00"}')
    assert req.error is None and req.user_id == "caf\u00e9 \U0001f600"


def test_hostile_lines_do_not_sink_the_batch(local_storage, live):  # noqa: F811
    lines = ['{"userId": "\\ud800"}', NESTED, json.dumps({"userId": "u1"})]
    local_storage.write_text("inputs/hostile.jsonl", "\n".join(lines) + "\n")
    manifest = run(
        local_storage, live, campaign(exploration_weight=0), input_key="inputs/hostile.jsonl"
    )
    out = lines_of(local_storage, manifest)
    assert manifest["users"] == 3 and manifest["errors"] == 2
    assert "lone surrogate" in out[0]["error"] and "nested" in out[1]["error"]
    assert out[2]["error"] is None and len(out[2]["output"]["recommendedItems"]) == 10


def test_num_results_zero_is_an_error_not_the_default(local_storage, live):  # noqa: F811
    for n in (0, 501):
        with pytest.raises(DataError, match="numResults must be between 1 and 500"):
            run(local_storage, live, campaign(), num_results=n)


def test_filter_bounds():
    with pytest.raises(FilterError, match=f"at most {MAX_FILTER_LENGTH} characters") as info:
        Filter.parse('EXCLUDE ItemID WHERE Items.GENRES IN ("' + "x" * 10_000_000 + '")')
    assert len(str(info.value)) < 500  # the message does not echo 10 MB
    with pytest.raises(FilterError, match="a string is at most 1000 characters"):
        Filter.parse('EXCLUDE ItemID WHERE Items.GENRES IN ("' + "x" * 1500 + '")')
    chain = " AND ".join(["Items.PRICE > 1"] * (MAX_CONDITIONS + 1))
    with pytest.raises(FilterError, match=f"at most {MAX_CONDITIONS} conditions"):
        Filter.parse("EXCLUDE ItemID WHERE " + chain)
    ok = " AND ".join(["Items.PRICE > 1"] * MAX_CONDITIONS)
    assert len(Filter.parse("EXCLUDE ItemID WHERE " + ok).expressions[0].groups[0]) == 50
    with pytest.raises(DataError, match="at most 1000 characters"):
        parse_filter_values({"G": "x" * 2000})
