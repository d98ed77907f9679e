"""Refusals: vigil does not store or infer sensitive traits (EU AI Act Art. 5(1)(g), GDPR Art. 9).

Any metadata key or field name that names a sensitive trait (race, ethnicity, skin colour, religion,
political opinion, sexual orientation, health, emotion, and their common spellings) is refused with a
message that says why. The check runs on every JSON body and form field the API receives (see the
server's middleware), on identity metadata, and on the CLI's ``--meta`` options. There is no attribute
classifier anywhere in vigil; this is what keeps one from being bolted on through metadata.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from vigil.core.errors import ForbiddenError, InputError
from vigil.core.names import InvalidNameError, check_name

# Normalised (lower case, letters only) stems. A key is refused when one of its words, or a run of its
# words joined, equals a stem, or starts with a stem of six letters or more ("ethnicity", "emotional").
# Ambiguous words alone ("party", "union", "orientation", "expression") are not refused; their
# sensitive compounds are ("political_party", "trade union", "sexual orientation", "facial expression").
SENSITIVE: dict[str, str] = {
    # racial or ethnic origin
    "race": "racial or ethnic origin",
    "racial": "racial or ethnic origin",
    "ethnic": "racial or ethnic origin",
    "ethnicity": "racial or ethnic origin",
    "ethnie": "racial or ethnic origin",
    "ancestry": "racial or ethnic origin",
    "nationalorigin": "racial or ethnic origin",
    "skin": "skin colour",
    "skincolor": "skin colour",
    "skincolour": "skin colour",
    "skintone": "skin colour",
    "complexion": "skin colour",
    "fitzpatrick": "skin colour",
    "hautfarbe": "skin colour",
    # religion or belief
    "religion": "religious or philosophical beliefs",
    "religious": "religious or philosophical beliefs",
    "faith": "religious or philosophical beliefs",
    "belief": "religious or philosophical beliefs",
    "confession": "religious or philosophical beliefs",
    "creed": "religious or philosophical beliefs",
    # political opinion, trade union membership
    "political": "political opinions",
    "politics": "political opinions",
    "tradeunion": "trade union membership",
    # sex life, sexual orientation
    "sexualorientation": "sexual orientation",
    "sexuality": "sexual orientation",
    "sexlife": "sex life",
    "lgbt": "sexual orientation",
    "gay": "sexual orientation",
    # health, genetics
    "health": "health",
    "medical": "health",
    "disability": "health",
    "diagnosis": "health",
    "illness": "health",
    "disease": "health",
    "pregnan": "health",
    "genetic": "genetic data",
    # emotion (Art. 5(1)(f))
    "emotion": "emotion",
    "emotional": "emotion",
    "mood": "emotion",
    "sentiment": "emotion",
    "facialexpression": "emotion",
    "politicalparty": "political opinions",
}

_WORD = re.compile(r"[a-z]+")


def _normalise(key: str) -> str:
    text = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode().lower()
    # camelCase -> camel case
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)


def sensitive_trait(key: str) -> str | None:
    """The sensitive trait ``key`` names, or None."""
    text = _normalise(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", key))
    words = _WORD.findall(text)
    joined = "".join(words)
    candidates = [*words, joined]
    # also every run of consecutive words ("skin_tone", "sexual-orientation", "trade union")
    candidates += ["".join(words[i:j]) for i in range(len(words)) for j in range(i + 2, len(words) + 1)]
    for c in candidates:
        for stem, trait in SENSITIVE.items():
            if c == stem or (len(stem) >= 6 and c.startswith(stem)):
                return trait
    return None


def refuse_sensitive_keys(keys: Iterable[str], where: str = "metadata") -> None:
    """Raise :class:`ForbiddenError` naming the first key that names a sensitive trait."""
    for key in keys:
        trait = sensitive_trait(key)
        if trait is not None:
            raise ForbiddenError(
                f"{where}: {key!r} names a sensitive trait ({trait}); vigil does not record or infer "
                "racial or ethnic origin, skin colour, religion, political opinion, sexual orientation, "
                "health or emotion (EU AI Act Art. 5(1)(f),(g); GDPR Art. 9)",
                hint="remove this field; see docs/governance.md",
            )


def all_keys(value: Any) -> Iterator[str]:
    """Every mapping key in a JSON-like value, at any depth (iteratively: no depth can overflow it)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for k, v in item.items():
                yield str(k)
                stack.append(v)
        elif isinstance(item, list | tuple):
            stack.extend(item)


MAX_METADATA_KEYS = 50
MAX_METADATA_BYTES = 8_192
"""Metadata is a few operator-defined fields (a badge number, a department), not a document."""


def check_metadata(metadata: Mapping[str, Any] | None, where: str = "metadata") -> None:
    """Refuses sensitive keys, keys that are not visible names, and metadata over
    :data:`MAX_METADATA_KEYS` keys or :data:`MAX_METADATA_BYTES` bytes as JSON."""
    if not metadata:
        return
    keys = list(all_keys(metadata))
    if len(keys) > MAX_METADATA_KEYS:
        raise InputError(
            f"{where} has {len(keys):,} keys; at most {MAX_METADATA_KEYS} are kept",
            hint="keep a few fields (a badge number, a department); link to other records by id",
        )
    size = len(json.dumps(metadata, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise InputError(
            f"{where} is {size:,} bytes as JSON; at most {MAX_METADATA_BYTES:,} are kept",
            hint="keep a few short fields; link to other records by id",
        )
    for key in keys:
        try:
            check_name(key, f"{where} key", max_chars=100)
        except InvalidNameError as exc:
            raise InputError(f"{where}: {exc.message}") from exc
    refuse_sensitive_keys(keys, where)
