"""Filters in Personalize's expression syntax (the useful subset), parsed once at creation.

Grammar (keywords case-insensitive)::

    filter     := expression ("|" expression)*
    expression := ("INCLUDE" | "EXCLUDE") "ItemID" "WHERE" condition (("AND" | "OR") condition)*
    condition  := "Items." FIELD ("IN" | "NOT IN") "(" values ")"
                | "Items." FIELD ("=" | "<" | ">" | "<=" | ">=") value
                | "Interactions.EVENT_TYPE" "IN" "(" values ")"
    values     := value ("," value)*
    value      := "double-quoted string" | number | $PARAMETER

AND binds tighter than OR. One expression reads one dataset (Items or Interactions), as in
Personalize. Expressions combine as Personalize documents: ``Include (A or B) - (C or D)``
(with no INCLUDE: every item minus the excluded ones). A ``$PARAMETER`` takes its values per
request from ``filterValues`` (``{"GENRE": "\\"Action\\",\\"Crime\\""}``); an expression whose
parameter has no value is left out, as Personalize does. A multi-valued categorical field
(``Action|Crime``) matches ``IN`` / ``=`` when any of its values does; an item without the field
matches only ``NOT IN``.

A malformed expression raises :class:`~recsys.errors.FilterError` with the 0-based position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import DataError, FilterError

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<unterminated>"(?:[^"\\]|\\.)*$)
    | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
    | (?P<param>\$[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op><=|>=|=|<|>|\(|\)|,|\||\.)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<bad>\S)
    )""",
    re.VERBOSE,
)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_QUOTED_LIST = re.compile(r'\s*"(?:[^"\\]|\\.)*"\s*(?:,\s*"(?:[^"\\]|\\.)*"\s*)*')
COMPARISONS = ("=", "<", ">", "<=", ">=")
MAX_EXPRESSIONS = 20
MAX_VALUES = 100
#: Bounds that keep a hostile filter cheap (Personalize caps an expression at 2,500 characters).
MAX_FILTER_LENGTH = 2500
MAX_CONDITIONS = 50  # conditions joined by AND / OR in one expression
MAX_VALUE_LENGTH = 1000  # one string literal or filterValues value, in characters


@dataclass(frozen=True)
class Token:
    kind: str  # string, number, param, op, word, end
    text: str
    pos: int


@dataclass(frozen=True)
class Value:
    kind: str  # string | number | param
    value: str | float


@dataclass(frozen=True)
class Condition:
    dataset: str  # Items | Interactions
    field: str
    op: str  # IN, NOT IN, =, <, >, <=, >=
    values: tuple[Value, ...]

    @property
    def params(self) -> set[str]:
        return {str(v.value) for v in self.values if v.kind == "param"}


@dataclass(frozen=True)
class Expression:
    action: str  # INCLUDE | EXCLUDE
    dataset: str
    #: OR of AND-groups of conditions.
    groups: tuple[tuple[Condition, ...], ...]

    @property
    def params(self) -> set[str]:
        return {p for g in self.groups for c in g for p in c.params}


def _tokens(text: str) -> list[Token]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        kind = m.lastgroup or "bad"
        start = m.start(kind)
        if kind == "bad":
            raise FilterError(f"unexpected character {m.group(kind)!r}", text, start)
        if kind == "unterminated":
            raise FilterError("unterminated string", text, start)
        out.append(Token(kind, m.group(kind), start))
        pos = m.end()
    out.append(Token("end", "", len(text.rstrip())))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def fail(self, what: str, tok: Token | None = None) -> FilterError:
        tok = tok or self.tok
        found = "the end of the expression" if tok.kind == "end" else repr(tok.text)
        return FilterError(f"expected {what}, found {found}", self.text, tok.pos)

    def keyword(self, *words: str) -> str:
        if self.tok.kind == "word" and self.tok.text.upper() in words:
            word = self.tok.text.upper()
            self.i += 1
            return word
        raise self.fail(" or ".join(words))

    def op(self, *ops: str) -> str:
        if self.tok.kind == "op" and self.tok.text in ops:
            self.i += 1
            return self.toks[self.i - 1].text
        raise self.fail(" or ".join(repr(o) for o in ops))

    def parse(self) -> list[Expression]:
        if self.tok.kind == "end":
            raise self.fail("INCLUDE or EXCLUDE")
        exprs = [self.expression()]
        while self.tok.kind == "op" and self.tok.text == "|":
            self.i += 1
            exprs.append(self.expression())
        if self.tok.kind != "end":
            raise self.fail("'|', AND, OR or the end of the expression")
        if len(exprs) > MAX_EXPRESSIONS:
            raise FilterError(f"at most {MAX_EXPRESSIONS} expressions", self.text, 0)
        return exprs

    def expression(self) -> Expression:
        action = self.keyword("INCLUDE", "EXCLUDE")
        if not (self.tok.kind == "word" and self.tok.text.lower() == "itemid"):
            raise self.fail("ItemID")
        self.i += 1
        self.keyword("WHERE")
        groups: list[list[Condition]] = [[self.condition()]]
        n_conditions = 1
        while self.tok.kind == "word" and self.tok.text.upper() in ("AND", "OR"):
            if n_conditions >= MAX_CONDITIONS:
                raise FilterError(
                    f"at most {MAX_CONDITIONS} conditions in one expression",
                    self.text,
                    self.tok.pos,
                )
            n_conditions += 1
            word = self.keyword("AND", "OR")
            cond_tok = self.tok
            cond = self.condition()
            if cond.dataset != groups[0][0].dataset:
                raise FilterError(
                    f"one expression reads one dataset: {groups[0][0].dataset} and "
                    f"{cond.dataset} need separate expressions joined by '|'",
                    self.text,
                    cond_tok.pos,
                )
            if word == "AND":
                groups[-1].append(cond)
            else:
                groups.append([cond])
        dataset = groups[0][0].dataset
        return Expression(action, dataset, tuple(tuple(g) for g in groups))

    def condition(self) -> Condition:
        start = self.tok
        if start.kind != "word" or start.text not in ("Items", "Interactions"):
            raise self.fail("Items.<FIELD> or Interactions.EVENT_TYPE")
        self.i += 1
        self.op(".")
        if self.tok.kind != "word":
            raise self.fail("a field name")
        field_tok = self.tok
        self.i += 1
        dataset = start.text
        if dataset == "Interactions" and field_tok.text != "EVENT_TYPE":
            raise FilterError(
                "Interactions filters support only EVENT_TYPE", self.text, field_tok.pos
            )
        op_tok = self.tok
        if self.tok.kind == "word" and self.tok.text.upper() in ("IN", "NOT"):
            op = "IN"
            if self.keyword("IN", "NOT") == "NOT":
                self.keyword("IN")
                op = "NOT IN"
            self.op("(")
            values = [self.value()]
            while self.tok.kind == "op" and self.tok.text == ",":
                self.i += 1
                values.append(self.value())
            if not (self.tok.kind == "op" and self.tok.text == ")"):
                raise self.fail("',' or ')'")
            self.i += 1
            if len(values) > MAX_VALUES:
                raise FilterError(f"at most {MAX_VALUES} values in a list", self.text, op_tok.pos)
        elif self.tok.kind == "op" and self.tok.text in COMPARISONS:
            op = self.op(*COMPARISONS)
            value_tok = self.tok
            values = [self.value()]
            if op != "=" and values[0].kind == "string":
                raise FilterError(
                    f"{op} compares numbers: expected a number or $PARAMETER",
                    self.text,
                    value_tok.pos,
                )
        else:
            raise self.fail("IN, NOT IN, =, <, >, <= or >=")
        if dataset == "Interactions" and op != "IN":
            raise FilterError(
                "Interactions.EVENT_TYPE supports only IN (...)", self.text, op_tok.pos
            )
        return Condition(dataset, field_tok.text, op, tuple(values))

    def value(self) -> Value:
        tok = self.tok
        if tok.kind == "string":
            if len(tok.text) - 2 > MAX_VALUE_LENGTH:
                raise FilterError(
                    f"a string is at most {MAX_VALUE_LENGTH} characters", self.text, tok.pos
                )
            self.i += 1
            return Value("string", re.sub(r"\\(.)", r"\1", tok.text[1:-1]))
        if tok.kind == "number":
            self.i += 1
            return Value("number", float(tok.text))
        if tok.kind == "param":
            self.i += 1
            return Value("param", tok.text[1:])
        raise self.fail('a "string", a number or a $PARAMETER')


def parse_filter_values(raw: Any) -> dict[str, list[str]]:
    """``filterValues`` of a request: {PARAM: '"a","b"'} (Personalize) → {PARAM: ["a", "b"]}.

    A value may also be a bare string (one value) or a JSON list of strings. Raises
    :class:`~recsys.errors.DataError` on anything else.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DataError("filterValues must be an object of parameter name → values")
    if len(raw) > MAX_EXPRESSIONS * MAX_CONDITIONS:
        raise DataError(f"filterValues: at most {MAX_EXPRESSIONS * MAX_CONDITIONS} parameters")
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise DataError(f"filterValues: bad parameter name {key!r}")
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            values = list(value)
        elif isinstance(value, str):
            text = value.strip()
            if text.startswith('"'):
                if not _QUOTED_LIST.fullmatch(text):
                    raise DataError(
                        f'filterValues.{key}: expected "value1","value2", got {value!r}'
                    )
                values = [re.sub(r"\\(.)", r"\1", q[1:-1]) for q in _QUOTED.findall(text)]
            else:
                values = [text]
        else:
            raise DataError(f"filterValues.{key}: expected a string, got {type(value).__name__}")
        if len(values) > MAX_VALUES:
            raise DataError(f"filterValues.{key}: at most {MAX_VALUES} values")
        if any(len(v) > MAX_VALUE_LENGTH for v in values):
            raise DataError(f"filterValues.{key}: a value is at most {MAX_VALUE_LENGTH} characters")
        out[key] = values
    return out


@dataclass(frozen=True)
class ResolvedFilter:
    """A filter with its parameters filled: item masks plus event types for per-user sets.

    ``include_items`` / ``exclude_items``: bool per catalogue item (None: no such expression);
    ``include_events`` / ``exclude_events``: event types whose interacted items a user
    includes / excludes (None: no such expression). ``restricts`` says whether any INCLUDE
    expression applies (then only included items may be recommended).
    """

    include_items: np.ndarray | None
    exclude_items: np.ndarray | None
    include_events: frozenset[str] | None
    exclude_events: frozenset[str] | None

    @property
    def restricts(self) -> bool:
        return self.include_items is not None or self.include_events is not None


@dataclass(frozen=True)
class Filter:
    """A parsed filter expression. Create with :meth:`parse` (raises on malformed input)."""

    expression: str
    expressions: tuple[Expression, ...]

    @classmethod
    def parse(cls, expression: str) -> Filter:
        if not isinstance(expression, str):
            raise FilterError("a filter expression must be a string", str(expression)[:80], 0)
        if len(expression) > MAX_FILTER_LENGTH:
            raise FilterError(
                f"a filter expression is at most {MAX_FILTER_LENGTH} characters, this one has "
                f"{len(expression)}",
                expression[:80] + "...",
                0,
            )
        return cls(expression, tuple(_Parser(expression).parse()))

    @cached_property
    def params(self) -> set[str]:
        return {p for e in self.expressions for p in e.params}

    @cached_property
    def item_fields(self) -> set[str]:
        return {
            c.field for e in self.expressions for g in e.groups for c in g if e.dataset == "Items"
        }

    def check_fields(self, item_columns: list[str] | set[str]) -> None:
        """Refuse Items fields the catalogue does not have (ConfigError-like FilterError)."""
        for field in sorted(self.item_fields - set(item_columns)):
            pos = self.expression.find(f"Items.{field}")
            raise FilterError(
                f"Items has no field {field} (fields: {', '.join(sorted(item_columns))})",
                self.expression,
                max(pos, 0),
            )

    def resolve(self, items: ItemTable, values: dict[str, list[str]]) -> ResolvedFilter:
        """Fill parameters from ``values`` and evaluate the Items conditions on ``items``."""
        inc_items = exc_items = None
        inc_events: set[str] | None = None
        exc_events: set[str] | None = None
        for expr in self.expressions:
            if any(p not in values for p in expr.params):
                continue  # Personalize ignores an expression whose parameter has no value
            if expr.dataset == "Items":
                mask = np.zeros(items.n, dtype=bool)
                for group in expr.groups:
                    g = np.ones(items.n, dtype=bool)
                    for cond in group:
                        g &= items.match(cond, _fill(cond, values))
                    mask |= g
                if expr.action == "INCLUDE":
                    inc_items = mask if inc_items is None else inc_items | mask
                else:
                    exc_items = mask if exc_items is None else exc_items | mask
            else:
                types: set[str] = set()
                for group in expr.groups:
                    g: set[str] | None = None
                    for cond in group:
                        vals = {str(v) for v in _fill(cond, values)}
                        g = vals if g is None else g & vals
                    types |= g or set()
                if expr.action == "INCLUDE":
                    inc_events = types | (inc_events or set())
                else:
                    exc_events = types | (exc_events or set())
        return ResolvedFilter(
            inc_items,
            exc_items,
            None if inc_events is None else frozenset(inc_events),
            None if exc_events is None else frozenset(exc_events),
        )


def _fill(cond: Condition, values: dict[str, list[str]]) -> list[str | float]:
    out: list[str | float] = []
    for v in cond.values:
        out.extend(values[str(v.value)] if v.kind == "param" else [v.value])
    return out


def schema_item_columns(group: Any) -> list[str]:
    """The Items fields a batch of this dataset group can filter on (``ItemID`` and the items
    schema's fields, as :class:`ItemTable` names them): what ``recsys filter check
    --dataset-group`` checks an expression against."""
    schema = group.schemas.get("items")
    fields = [f.name for f in schema.fields if f.name != "ITEM_ID"] if schema else []
    return ["ItemID", *fields]


class ItemTable:
    """Item metadata aligned to a catalogue (row i = item i), for evaluating Items conditions."""

    def __init__(self, item_ids: np.ndarray, items: pd.DataFrame | None) -> None:
        self.n = len(item_ids)
        if items is None:
            self.frame = pd.DataFrame(index=range(self.n))
        else:
            pos = pd.Index(items["ITEM_ID"].astype(str)).get_indexer(pd.Index(item_ids).astype(str))
            cols = [c for c in items.columns if c != "ITEM_ID"]
            self.frame = items[cols].iloc[np.maximum(pos, 0)].reset_index(drop=True)
            self.frame.loc[pos < 0, :] = None
        self.columns = ["ItemID", *self.frame.columns]
        self._cache: dict[tuple[str, str], Any] = {}

    def _categories(self, field: str) -> pd.Series:
        """One row per (item position, value) of a ``|``-joined categorical field."""
        key = ("cat", field)
        if key not in self._cache:
            col = self.frame[field].astype("string").str.split("|").explode()
            self._cache[key] = col.dropna()
        return self._cache[key]

    def _numbers(self, field: str) -> np.ndarray:
        key = ("num", field)
        if key not in self._cache:
            col = pd.to_numeric(self.frame[field], errors="coerce")
            self._cache[key] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return self._cache[key]

    def match(self, cond: Condition, values: list[str | float]) -> np.ndarray:
        if cond.field not in self.frame.columns:
            raise DataError(f"filter: Items has no field {cond.field}")
        col = self.frame[cond.field]
        numeric = pd.api.types.is_numeric_dtype(col.dtype)
        if cond.op in ("<", ">", "<=", ">=") or (numeric and cond.op in ("=", "IN", "NOT IN")):
            nums = self._numbers(cond.field)
            try:
                targets = np.array([float(v) for v in values])
            except ValueError as exc:
                raise DataError(f"filter: Items.{cond.field} is numeric, got value {exc}") from exc
            if cond.op in ("=", "IN", "NOT IN"):
                hit = np.isin(nums, targets)
                return ~hit if cond.op == "NOT IN" else hit
            t = targets[0]
            with np.errstate(invalid="ignore"):
                return {"<": nums < t, ">": nums > t, "<=": nums <= t, ">=": nums >= t}[cond.op]
        wanted = {_as_text(v) for v in values}
        cats = self._categories(cond.field)
        hit = np.zeros(self.n, dtype=bool)
        hit[cats.index.to_numpy()[cats.isin(wanted).to_numpy(dtype=bool)]] = True
        return ~hit if cond.op == "NOT IN" else hit


def _as_text(v: str | float) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
