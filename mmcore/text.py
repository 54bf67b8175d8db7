"""Small text helpers for user-facing messages."""

from __future__ import annotations

import difflib
import re

MARKDOWN_SPECIAL = re.compile(r"([\\|`<&$])")  # what would break a row or read as code, HTML or math
LINE_BREAK = re.compile(r"\s*[\r\n]+\s*")  # inside a table cell or a heading, it would end the row


def markdown_cell(text: str) -> str:
    """``text`` for a markdown table cell or heading: names come from users and plugins, and a ``|``
    in one would add a column, a newline end the row, ``<script>`` reach a renderer as HTML; each
    such character is escaped with a backslash, a line break becomes a space."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", LINE_BREAK.sub(" ", text))


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` did you mean 'x'?`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" did you mean '{close[0]}'?" if close else ""
