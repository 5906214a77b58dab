"""Help texts from docstrings: the reStructuredText markup stripped, so ``--help`` reads as prose.

The command modules' docstrings are written for the API docs (``code``, ``:mod:`` roles,
``::`` literal blocks); :func:`plain` turns them into what a terminal should show.
"""

from __future__ import annotations

import re

__all__ = ["plain"]

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`([^`]*)`")
_LITERAL = re.compile(r"``([^`]+)``")
_DIRECTIVE = re.compile(r"^[ \t]*\.\. [a-z-]+::.*$\n?", flags=re.M)


def _role_text(match: re.Match[str]) -> str:
    text = match.group(1)
    target = re.fullmatch(r"(.*?)\s*<[^>]*>", text)  # :role:`shown text <target>`
    if target:
        return target.group(1)
    if text.startswith("~"):  # :class:`~a.b.Name` shows Name
        return text[1:].rsplit(".", 1)[-1]
    return text


def plain(rst: str) -> str:
    """``rst`` without inline markup: ````x```` -> ``x``, ``:role:`~a.b.c``` -> ``c``, ``text::`` -> ``text:``.

    A paragraph that is only ``::`` (the marker of a literal block) disappears; directives
    (``.. note::``) are dropped. Indentation and line breaks are kept.
    """
    text = _DIRECTIVE.sub("", rst)
    text = _ROLE.sub(_role_text, text)
    text = _LITERAL.sub(r"\1", text)
    text = re.sub(r"(?m)^[ \t]*::[ \t]*\n", "", text)  # a bare literal-block marker line
    text = re.sub(r"(?m)(\S)::$", r"\1:", text)  # "Example::" -> "Example:"
    return text
