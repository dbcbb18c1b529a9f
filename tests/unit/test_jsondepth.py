"""jsondepth.loads: JSON of any depth PostgreSQL accepts, read to a bounded depth, never a RecursionError."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from pgactivity import jsondepth
from pgactivity.jsondepth import ELIDED


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("depth", [1000, 3000, 100_000])
def test_deeper_than_python_can_parse_is_cut_not_an_error(depth: int) -> None:
    with pytest.raises(RecursionError):
        json.loads(nested(depth))
    value = jsondepth.loads('{"a": ' + nested(depth) + ', "b": "after"}', max_depth=3)
    assert value == {"a": [[ELIDED]], "b": "after"}


def test_shallow_json_is_unchanged_and_strings_with_brackets_are_text() -> None:
    text = '{"a": {"b": [1, "x]}{[", {"c": null}]}, "d": "\\\\\\"]"}'
    assert jsondepth.loads(text, max_depth=4) == json.loads(text)
    assert jsondepth.loads(text, max_depth=2) == {"a": {"b": ELIDED}, "d": '\\"]'}
    assert jsondepth.loads(b"[1, 2]") == [1, 2]
    assert jsondepth.loads('"scalar"') == "scalar"


@pytest.mark.parametrize("text", ["[", '{"a": [1,', '"abc', nested(50)[:-1], "", "nope"])
def test_text_that_is_not_json_is_a_value_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        jsondepth.loads(text, max_depth=3)


def test_the_scan_and_the_walk_cut_at_the_same_place() -> None:
    """Below Python's limit the parsed value is pruned; above it the text is rewritten first: same result."""
    rng = random.Random(7)

    def build(depth: int) -> Any:
        if depth > 7 or rng.random() < 0.3:
            return rng.choice([1, "a]b{", None, True, 2.5, 'q"uo\\\\te'])
        if rng.random() < 0.5:
            return [build(depth + 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i}": build(depth + 1) for i in range(rng.randint(0, 3))}

    for _ in range(500):
        value = build(0)
        limit = rng.randint(1, 6)
        text = json.dumps(value)
        scanned = json.loads(jsondepth._flatten(text, limit))
        walked = jsondepth._prune(copy.deepcopy(value), limit)
        assert scanned == walked, (text, limit)
