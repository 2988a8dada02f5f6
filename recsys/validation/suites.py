"""great-expectations suites built from a dataset group's schema, run on snapshot frames.

One suite per dataset type: every declared column exists; required columns and ids are not
null; ids are 1-256 characters; numbers have a numeric dtype; TIMESTAMP/CREATION_TIMESTAMP lie
in the group's epoch-seconds range; EVENT_TYPE is a declared one; IMPRESSION is ``|``-joined
ids; categorical values are at most 1,000 characters; items and users have unique ids.

The import already quarantines rows that break these rules, so on a fresh snapshot the suites
pass; they guard what the row rules cannot see (a base snapshot made under an older schema, a
snapshot written by other code) and leave great-expectations' own result beside the snapshot
for anyone who reads it with GX tooling.

great-expectations is imported here, lazily: it is slow to import and never needed at DAG parse
time.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pandas as pd

from recsys.schema import (
    ID_FIELD,
    ID_FIELDS,
    MAX_CATEGORICAL_VALUE_LENGTH,
    MAX_ID_LENGTH,
    TIMESTAMP_FIELDS,
    DatasetGroup,
)

# Empty ids or ids over 256 characters in a ``|``-joined list (same rule as the import's).
BAD_ID_LIST = rf"(?:^|\|)(?:\||$)|[^|]{{{MAX_ID_LENGTH + 1}}}"
# RE2 (behind pandas' Arrow strings) allows repetitions up to 1000, hence {1000} then one more.
LONG_CATEGORICAL = rf"[^|]{{{MAX_CATEGORICAL_VALUE_LENGTH}}}[^|]"
_NUMERIC_DTYPES = ["int64", "Int64", "int32", "Int32", "float64", "Float64", "float32"]


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no network calls from a task
    # GX logs hundreds of INFO lines while it imports and builds a context.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)

    return gx


def build_suite(group: DatasetGroup, dataset_type: str):
    """The expectation suite for one dataset type of ``group``."""
    gx = _gx()
    E = gx.expectations
    schema = group.schemas[dataset_type]
    policy = group.validation
    suite = gx.ExpectationSuite(name=f"{group.name}.{dataset_type}")
    for f in schema.fields:
        suite.add_expectation(E.ExpectColumnToExist(column=f.name))
    for f in schema.fields:
        if not f.nullable:
            suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=f.name))
        if f.name in ID_FIELDS:
            suite.add_expectation(
                E.ExpectColumnValueLengthsToBeBetween(
                    column=f.name, min_value=1, max_value=MAX_ID_LENGTH
                )
            )
        if f.numeric and not (f.integral and f.nullable):
            # (GX reports pandas' nullable Int64 as int64 and fails it: recsys' own
            # column_types check covers those columns.)
            suite.add_expectation(
                E.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=_NUMERIC_DTYPES)
            )
        if f.name in TIMESTAMP_FIELDS:
            suite.add_expectation(
                E.ExpectColumnValuesToBeBetween(
                    column=f.name,
                    min_value=int(policy.min_timestamp),
                    max_value=int(policy.max_timestamp),
                )
            )
        if f.name == "EVENT_TYPE" and group.event_types:
            suite.add_expectation(
                E.ExpectColumnValuesToBeInSet(column=f.name, value_set=list(group.event_types))
            )
        if f.name == "IMPRESSION":
            suite.add_expectation(
                E.ExpectColumnValuesToNotMatchRegex(column=f.name, regex=BAD_ID_LIST)
            )
        if f.categorical:
            suite.add_expectation(
                E.ExpectColumnValuesToNotMatchRegex(column=f.name, regex=LONG_CATEGORICAL)
            )
    id_field = ID_FIELD[dataset_type]
    if id_field is not None:
        suite.add_expectation(E.ExpectColumnValuesToBeUnique(column=id_field))
    return suite


def run_suites(
    group: DatasetGroup, frames: dict[str, pd.DataFrame]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run each dataset's suite; return one check per expectation and GX's JSON results."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("recsys")
    checks: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    for dtype, df in frames.items():
        batch = source.add_dataframe_asset(dtype).add_batch_definition_whole_dataframe("snapshot")
        suite = context.suites.add(build_suite(group, dtype))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{group.name}.{dtype}", data=batch, suite=suite)
        )
        result = definition.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
        results[dtype] = result.to_json_dict()
        for r in result.results:
            cfg = r.expectation_config
            column = cfg.kwargs.get("column")
            checks.append(_as_check(dtype, cfg.type, column, r))
    return checks, results


def _as_check(dtype: str, kind: str, column: str | None, r) -> dict[str, Any]:
    name = f"{dtype}.gx.{kind}" + (f"({column})" if column else "")
    info = r.exception_info or {}
    if info.get("raised_exception"):
        message = f"great-expectations raised: {info.get('exception_message')}"
        return {"check": name, "passed": False, "severity": "error", "message": message}
    res = r.result or {}
    bad = res.get("unexpected_count")
    if r.success:
        message = "ok"
    elif bad is not None:
        examples = ", ".join(repr(v)[:60] for v in (res.get("partial_unexpected_list") or [])[:5])
        message = f"{bad} of {res.get('element_count')} values unexpected (e.g. {examples})"
    else:
        observed = res.get("observed_value")
        message = "failed" + (f" (observed {observed})" if observed is not None else "")
    return {
        "check": name,
        "passed": bool(r.success),
        "severity": "error",
        "message": message,
        "rows": bad,
    }
