"""One rule set for identity names, applied by every way in (``lrface gallery enroll``, the
service's enroll): a name is stored in Unicode NFKC form, must be a safe, plain name, and must
not mix scripts inside a word; two names that differ only in case, width or separators are the
same identity (``name_key``), so ``Tony_Blair``, ``TONY_BLAIR`` and ``Tony Blair`` cannot be
three people, and a Cyrillic ``а`` cannot pass for a Latin ``a`` inside ``admin``."""

from __future__ import annotations

import re
import unicodedata

NAME_PATTERN = re.compile(r"[^\W_][\w .'-]{0,98}[\w.]|[^\W_]")
"""Letters or digits first, then letters, digits, ``_ . ' -`` and spaces (no ``/``, ``\\``,
control characters, or leading dots), at most 100 characters, no space at the end."""

SEPARATORS = re.compile(r"[\s_.\-]+")
"""Runs of these count as one space when names are compared (``name_key``)."""

COMPATIBLE_SCRIPTS = ({"CJK", "HIRAGANA", "KATAKANA"}, {"CJK", "HANGUL"})
"""Scripts that legitimately share one word (Japanese and Korean writing)."""


class InvalidName(ValueError):
    """An identity name refused by the rules; the message says which rule and why."""


def normalize_name(name: str) -> str:
    """``name`` in NFKC form if it passes every rule, else InvalidName saying what is allowed.

    Rules: 1-100 letters, digits, spaces and ``_ . ' -``, starting with a letter or digit, no
    ``..``, no trailing space, and each word written in one script."""
    normal = unicodedata.normalize("NFKC", name)
    if not NAME_PATTERN.fullmatch(normal) or ".." in normal:
        raise InvalidName(
            f"invalid identity name {name[:120]!r}: use 1-100 letters, digits, spaces and "
            f"_ . ' - (starting with a letter or digit, no '..')"
        )
    for word in SEPARATORS.split(normal):
        scripts = {_script(ch) for ch in word if ch.isalpha()}
        if len(scripts) > 1 and not any(scripts <= ok for ok in COMPATIBLE_SCRIPTS):
            raise InvalidName(
                f"invalid identity name {name[:120]!r}: the word {word!r} mixes scripts "
                f"({', '.join(sorted(scripts))}); write each word in one script"
            )
    return normal


def name_key(name: str) -> str:
    """What makes two names the same identity: NFKC, case-folded, separators (space, ``_``,
    ``-``, ``.``) folded to one space, trimmed."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return SEPARATORS.sub(" ", folded).strip()


def _script(ch: str) -> str:
    """The script of a letter, from the first word of its Unicode name (LATIN, CYRILLIC, CJK,
    ...); Python's unicodedata has no script property, and this is enough to tell scripts apart."""
    return unicodedata.name(ch, "UNKNOWN").split(" ")[0]
