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

import contextlib
import logging
import os
from collections import Counter
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


#: GX's default for SUMMARY results: unexpected values (and their row indices) kept as examples.
PARTIAL_UNEXPECTED_COUNT = 20


class SuiteRunner:
    """One ephemeral GX context holding one validation definition per dataset type, built once.

    :meth:`run` validates a frame (a whole dataset, or one batch of the interactions) with
    ``batch_parameters={"dataframe": frame}``, so the suite is not rebuilt per batch.
    """

    def __init__(self, group: DatasetGroup, dataset_types) -> None:
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas("recsys")
        self._definitions = {}
        for dtype in dataset_types:
            batch = source.add_dataframe_asset(dtype).add_batch_definition_whole_dataframe(
                "snapshot"
            )
            suite = context.suites.add(build_suite(group, dtype))
            self._definitions[dtype] = context.validation_definitions.add(
                gx.ValidationDefinition(name=f"{group.name}.{dtype}", data=batch, suite=suite)
            )

    def run(self, dtype: str, df: pd.DataFrame):
        """GX's result object (``ExpectationSuiteValidationResult``) for ``df``."""
        return self._definitions[dtype].run(
            batch_parameters={"dataframe": df}, result_format="SUMMARY"
        )


def run_suites(
    group: DatasetGroup, frames: dict[str, pd.DataFrame]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run each dataset's suite; return one check per expectation and GX's JSON results."""
    runner = SuiteRunner(group, list(frames))
    return suite_checks({dtype: runner.run(dtype, df) for dtype, df in frames.items()})


def suite_checks(results: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One check per expectation and the JSON results, from GX result objects per dataset."""
    checks: list[dict[str, Any]] = []
    json_results: dict[str, Any] = {}
    for dtype, result in results.items():
        json_results[dtype] = result.to_json_dict()
        for r in result.results:
            cfg = r.expectation_config
            column = cfg.kwargs.get("column")
            checks.append(_as_check(dtype, cfg.type, column, r))
    return checks, json_results


def merge_results(total, batch):
    """Fold the GX result of a later batch of the same dataset into ``total`` (in place).

    For each expectation: success if it succeeded on every batch; element, unexpected and
    missing counts summed and the percentages recomputed as GX computes them; the unexpected
    values and their row indices are the first PARTIAL_UNEXPECTED_COUNT in row order (GX keeps
    those per batch, so the concatenation's first ones are the whole file's), and their counts
    are recounted from them. Results without counts (a column exists, a column's dtype) keep the
    first failing batch's. The first exception raised is kept. Only per-row expectations can be
    merged this way: ``expect_column_values_to_be_unique`` would miss duplicates that fall in
    different batches, and is only in the items and users suites (validated whole).
    """
    if len(total.results) != len(batch.results):
        raise AssertionError("batches of one dataset ran different suites")
    for t, b in zip(total.results, batch.results, strict=True):
        if t.expectation_config.type != b.expectation_config.type:
            raise AssertionError("batches of one dataset ran different suites")
        if t.expectation_config.type == "expect_column_values_to_be_unique":
            raise AssertionError("uniqueness cannot be checked batch by batch")
        if (b.exception_info or {}).get("raised_exception") and not (
            (t.exception_info or {}).get("raised_exception")
        ):
            t.exception_info = b.exception_info
        tr, br = t.result or {}, b.result or {}
        if "element_count" in tr and "element_count" in br:
            t.result = _merge_counts(tr, br)
        elif t.success and not b.success:
            t.result = br
        t.success = bool(t.success and b.success)
    successful = sum(bool(r.success) for r in total.results)
    evaluated = len(total.results)
    total.success = successful == evaluated
    total.statistics.update(
        evaluated_expectations=evaluated,
        successful_expectations=successful,
        unsuccessful_expectations=evaluated - successful,
        success_percent=successful / evaluated * 100 if evaluated else None,
    )
    return total


def _merge_counts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two SUMMARY map results combined, as GX's ``_format_map_output`` builds one."""
    element = a["element_count"] + b["element_count"]
    unexpected = None
    if a.get("unexpected_count") is not None and b.get("unexpected_count") is not None:
        unexpected = a["unexpected_count"] + b["unexpected_count"]
    has_missing = "missing_count" in a
    missing = a.get("missing_count", 0) + b.get("missing_count", 0) if has_missing else None
    total_pct = nonmissing_pct = missing_pct = None
    if unexpected is not None and element > 0:
        total_pct = unexpected / element * 100
        if has_missing:
            missing_pct = missing / element * 100
            nonnull = element - missing
            nonmissing_pct = unexpected / nonnull * 100 if nonnull > 0 else None
        else:
            nonmissing_pct = total_pct
    out: dict[str, Any] = {
        "element_count": element,
        "unexpected_count": unexpected,
        "unexpected_percent": nonmissing_pct,
    }
    values = None
    if "partial_unexpected_list" in a:
        values = (a["partial_unexpected_list"] + b.get("partial_unexpected_list", []))[
            :PARTIAL_UNEXPECTED_COUNT
        ]
        out["partial_unexpected_list"] = values
    if has_missing:
        out.update(
            missing_count=missing,
            missing_percent=missing_pct,
            unexpected_percent_total=total_pct,
            unexpected_percent_nonmissing=nonmissing_pct,
        )
    if values is not None:
        # Values that do not sort together (TypeError): GX leaves the counts out too.
        with contextlib.suppress(TypeError):
            out["partial_unexpected_counts"] = [
                {"value": key, "count": value}
                for key, value in sorted(
                    Counter(values).most_common(PARTIAL_UNEXPECTED_COUNT),
                    key=lambda x: (-x[1], x[0]),
                )
            ]
    if "partial_unexpected_index_list" in a:
        out["partial_unexpected_index_list"] = (
            a["partial_unexpected_index_list"] + b.get("partial_unexpected_index_list", [])
        )[:PARTIAL_UNEXPECTED_COUNT]
    for key, value in a.items():  # anything else GX reports: the first batch's
        out.setdefault(key, value)
    return out


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
