"""What every structure reader returns (:class:`StructureRecord`) and the small helpers the readers share
(one-line messages, the counts line of a POSCAR or CHGCAR header). Kept apart so that the CIF/POSCAR
readers (:mod:`rhosym.io.structures`) and the CHGCAR reader (:mod:`rhosym.io.chgcar`) import it
without importing each other."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rhosym.io.limits import Limits, check


@dataclass
class StructureRecord:
    """One structure read from a source (or the reason it could not be read)."""

    source: str
    block: str = ""
    structure: object | None = None  # pymatgen Structure
    error: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.structure is not None and not self.error


def one_line(msg: object, limit: int = 300) -> str:
    """A message squeezed onto one line (for ``reason`` / ``error`` fields)."""
    s = re.sub(r"\s+", " ", str(msg)).strip()
    return s[:limit] + ("..." if len(s) > limit else "")


def _is_ints(tokens: list[str]) -> bool:
    return bool(tokens) and all(re.fullmatch(r"\d+", t) for t in tokens)


def poscar_counts(lines: list[str]) -> tuple[int, list[int]] | None:
    """``(index of the counts line, counts)`` of a POSCAR (or CHGCAR) header's first lines: line 6 in
    VASP 4 files, line 7 after the species line in VASP 5; None when neither is a line of integers."""
    for i in (5, 6):
        toks = lines[i].split() if len(lines) > i else []
        if _is_ints(toks):
            return i, [int(t) for t in toks]
    return None


def check_counts(lines: list[str], limits: Limits, what: str = "POSCAR") -> tuple[int, list[int]] | None:
    """:func:`poscar_counts`, refused when the counts line holds more than ``max_input_sites`` sites."""
    found = poscar_counts(lines)
    if found is not None:
        check(sum(found[1]), "max_input_sites", limits, f"{sum(found[1])} sites in the {what}'s counts line")
    return found
