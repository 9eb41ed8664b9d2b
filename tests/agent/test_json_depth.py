"""The body guard's depth count (api.json_depth): the regex scan counts what a
character-by-character reading counts, on any text, JSON or not."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pos_plugin.api import json_depth


def depth_by_characters(text: str) -> int:
    """The reference: read every character, tracking strings and escapes."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
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
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\[]{}\n药'),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(alphabet='k"\\[{', max_size=3), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_the_depth_of_json_is_its_nesting(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert json_depth(text) == depth_by_characters(text)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet='[]{}"\\ a\n'))
def test_any_text_counts_as_a_character_reading_counts_it(text: str) -> None:
    # unterminated strings, a trailing backslash, more closing than opening brackets
    assert json_depth(text) == depth_by_characters(text)


def test_brackets_in_strings_are_text_and_nesting_is_counted() -> None:
    assert json_depth('{"a": "[[[[", "b": [[1], {"c": "\\"]]"}]}') == 3
    assert json_depth("") == 0
    assert json_depth("[" * 40 + "]" * 40) == 40
