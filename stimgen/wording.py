"""Counted nouns in plain English ("1 identity", "452 stimuli") for messages, the plan and
the report, so that no output says "1 identities".
"""
from __future__ import annotations

#: Plurals the report's counted nouns need that are not the singular plus "s".
IRREGULAR_PLURALS = {"stimulus": "stimuli", "identity": "identities", "intensity": "intensities"}


def plural(count, noun: str) -> str:
    """``noun`` in the number ``count`` asks for: "identity" for 1, "identities" otherwise.

    >>> plural(1, "identity"), plural(4, "identity"), plural(2, "target angle")
    ('identity', 'identities', 'target angles')
    """
    if count == 1:
        return noun
    head, _, last = noun.rpartition(" ")
    return f"{head} {IRREGULAR_PLURALS.get(last, last + 's')}".lstrip()


def quantity(count, noun: str) -> str:
    """A count with its noun in the right number: "1 identity", "452 stimuli".

    >>> quantity(1, "identity"), quantity(452, "stimulus")
    ('1 identity', '452 stimuli')
    """
    return f"{count} {plural(count, noun)}"
