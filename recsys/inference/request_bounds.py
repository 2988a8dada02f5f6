"""Bounds on one batch-input line, checked before and after it is parsed as JSON.

A line that breaks them gets an error line of its own (``parse_request`` never raises): too long
(:data:`MAX_LINE_LENGTH`), nested deeper than :data:`MAX_DEPTH` (200,000 brackets would exhaust
the parser's recursion), or holding text that is not valid Unicode (a lone surrogate such as
``"\\ud800"`` cannot be written as UTF-8, and would fail the whole shard when its output line is
written). The echoed ``input`` of such a line is the raw line, made writable and cut short.
"""

from __future__ import annotations

from typing import Any

#: A Personalize batch-input line is a userId, up to 500 item ids and a few filter values.
MAX_LINE_LENGTH = 1 << 20
MAX_DEPTH = 16
#: How much of a refused line is echoed back in its error line.
MAX_LINE_ECHO = 1000


def safe_text(text: Any) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) replaced."""
    text = text if isinstance(text, str) else repr(text)
    return text.encode("utf-8", "replace").decode("utf-8")


def request_problem(line: Any) -> str | None:
    """Why the raw line is refused before parsing, or None."""
    if not isinstance(line, str):
        return f"a line must be text, got {type(line).__name__}"
    if len(line) > MAX_LINE_LENGTH:
        return f"line longer than {MAX_LINE_LENGTH} characters ({len(line)})"
    depth = deepest = 0
    in_string = escaped = False
    for ch in line:  # bracket depth outside strings, without recursion
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return f"nested deeper than {MAX_DEPTH} levels"
        elif ch in "]}":
            depth -= 1
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode (a lone surrogate)"
    return None


def value_problem(obj: Any) -> str | None:
    """Why a parsed line is refused (text that is not valid Unicode, e.g. ``"\\ud800"``)."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "not valid Unicode: a string holds a lone surrogate (e.g. \\ud800)"
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None
