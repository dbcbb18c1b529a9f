"""JSON of any depth, read to a bounded depth.

PostgreSQL accepts `jsonb` nested thousands of levels deep; Python's `json.loads`
raises RecursionError at about a thousand, and code that walks what it returns
(`json.dumps`, a formatter) fails earlier still. Whatever reads activity or
event JSON in this process for its own use (`pgactivity tail`, the Slack
consumer) reads it with `loads`: containers deeper than `max_depth` become the
string "…", nothing else changes. The stream itself never parses payloads (it
passes PostgreSQL's text through), so it is not concerned.

Linear in the text: the common case (few brackets, or a normal depth) is one
`json.loads`; only a text that is really too deep is rewritten first, by a
regular-expression scan (no recursion).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
ELIDED = "…"

# A JSON string, a bracket, a run of anything else, or (malformed input) any one character.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|[^"\[\]{}]+|.', re.DOTALL)


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, with containers nested deeper than max_depth replaced by "…".

    Raises ValueError (json.JSONDecodeError) for text that is not JSON, never RecursionError.
    """
    if isinstance(text, bytes):
        text = text.decode()
    if text.count("[") + text.count("{") <= max_depth:
        return json.loads(text)  # cannot be deeper than that
    try:
        value = json.loads(text)
    except RecursionError:
        return json.loads(_flatten(text, max_depth))
    return _prune(value, max_depth)


def _flatten(text: str, max_depth: int) -> str:
    """The text with every container below max_depth replaced by "…" (still JSON if the text was)."""
    out: list[str] = []
    depth = 0
    elided = json.dumps(ELIDED)
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth == max_depth + 1:
                out.append(elided)
            if depth > max_depth:
                continue
        elif token in ("]", "}"):
            depth -= 1
            if depth >= max_depth:
                continue
        elif depth > max_depth:
            continue
        out.append(token)
    return "".join(out)


def _prune(value: Any, max_depth: int) -> Any:
    """Replace, in place and without recursion, the containers deeper than max_depth."""
    if not isinstance(value, dict | list):
        return value
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        keys: Any = list(node) if isinstance(node, dict) else range(len(node))
        for key in keys:
            child = node[key]
            if isinstance(child, dict | list):
                if depth >= max_depth:
                    node[key] = ELIDED
                else:
                    stack.append((child, depth + 1))
    return value
