"""Names people give things (galleries, cameras, people, users, keys, sites): what they may hold.

Every name is shown in the UI, the CLI, reports and the audit log, and some are parts of URLs. So a
name is trimmed, non-empty and bounded, and holds no control or invisible formatting characters: no
NUL, no newline, no right-to-left override that would show an audit line backwards. A name that is a
path segment (``/api/galleries/{name}``) holds no ``/`` or ``\\`` and is not ``.`` or ``..``.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator

from vigil.core.errors import InputError

MAX_NAME_CHARS = 200
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Control, format (bidi overrides, zero-width), surrogate, private-use, unassigned, line/paragraph
separators."""


class InvalidNameError(InputError, ValueError):
    """A name that breaks the rules above: a 422 from the API, a validation error inside pydantic."""

    title = "invalid name"


def check_name(value: str, what: str, *, segment: bool = False, max_chars: int = MAX_NAME_CHARS) -> str:
    """``value`` trimmed, or :class:`InvalidNameError` naming what is wrong with it.

    ``segment``: the name is also a URL path segment.
    """
    name = value.strip()
    if not name:
        raise InvalidNameError(f"the {what} is empty")
    if len(name) > max_chars:
        raise InvalidNameError(f"the {what} has {len(name):,} characters; at most {max_chars} are allowed")
    bad = next((c for c in name if unicodedata.category(c) in _HIDDEN), None)
    if bad is not None:
        label = unicodedata.name(bad, "a control character")
        raise InvalidNameError(f"the {what} holds U+{ord(bad):04X} ({label}); use visible characters only")
    if segment and ("/" in name or "\\" in name or name in (".", "..")):
        raise InvalidNameError(
            f"the {what} {name!r} cannot hold '/' or '\\' or be '.' or '..' (it is part of URLs)"
        )
    return name


def _validator(what: str, *, segment: bool) -> AfterValidator:
    return AfterValidator(lambda v: check_name(v, what, segment=segment))


SegmentName = Annotated[str, _validator("name", segment=True)]
"""A name that is also a URL path segment: galleries, cameras, users, keys."""
PersonName = Annotated[str, _validator("name", segment=False)]
"""A person's name: anything visible ("AC/DC" too)."""
