"""Random crystals with pyxtal: the ``synthetic`` data-set kind.

Structure ``i`` depends only on (global seed, i) and the data set's settings, never on the shard
size: its space group, composition and pyxtal random state are all drawn from
``numpy.random.default_rng([seed, i, try])``.

Compositions are drawn so that pyxtal can place them: each species gets a number of atoms that is a
sum of Wyckoff multiplicities of the (conventional) space group, the total stays at or below
``max_atoms`` and :meth:`pyxtal.symmetry.Group.check_compatible` accepts it. Generation is retried a
bounded number of times; pyxtal places atoms on special positions freely, so a structure can come out
with more symmetry than asked, in which case another try is made and, when every try overshoots, the
last structure is kept with the space group spglib finds (the labels are always spglib's).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

log = logging.getLogger("rhosym.synthetic")

DEFAULT_ELEMENTS = (
    "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Sc", "Ti", "V",
    "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Rb", "Sr", "Y", "Zr", "Nb",
    "Mo", "Ru", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Cs", "Ba", "La", "Hf", "Ta", "W", "Pt",
    "Au", "Pb", "Bi",
)
MAX_TRIES = 6
MAX_SPECIES = 3


def _space_group_of(index: int, seed: int, space_groups) -> int:
    rng = np.random.default_rng([seed, index, 1_000_003])
    if space_groups in (None, "all"):
        return int(rng.integers(1, 231))
    groups = [int(g) for g in space_groups]
    return int(groups[rng.integers(len(groups))])


def _multiplicities(sg: int) -> list[int]:
    from pyxtal.symmetry import Group

    return sorted({int(w.multiplicity) for w in Group(sg).Wyckoff_positions})


def _draw_composition(rng: np.random.Generator, sg: int, max_atoms: int, elements) -> tuple[list[str], list[int]] | None:
    """Species and counts pyxtal accepts for ``sg``, at most ``max_atoms`` in all; None if none found."""
    from pyxtal.symmetry import Group

    group = Group(sg)
    mults = [m for m in _multiplicities(sg) if m <= max_atoms]
    if not mults:
        return None
    for _ in range(30):
        n_species = int(rng.integers(1, MAX_SPECIES + 1))
        counts: list[int] = []
        budget = max_atoms
        for _k in range(n_species):
            options = [m for m in mults if m <= budget]
            if not options:
                break
            c = int(rng.choice(options))
            # sometimes two orbits of one species
            if rng.random() < 0.25:
                extra = [m for m in mults if c + m <= budget]
                if extra:
                    c += int(rng.choice(extra))
            counts.append(c)
            budget -= c
        if not counts:
            continue
        compatible, _freedom = group.check_compatible(counts)
        if compatible:
            species = [str(e) for e in rng.choice(list(elements), size=len(counts), replace=False)]
            return species, counts
    return None


def synthetic_structure(index: int, seed: int = 0, space_groups="all", max_atoms: int = 24,
                        elements=None, symprec: float = 0.1, factor: float = 1.1,
                        max_tries: int = MAX_TRIES):
    """Structure ``index`` of a synthetic data set.

    Returns ``(structure or None, reason, info)``; ``info`` has ``target_space_group`` and ``tries``.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    from pyxtal import pyxtal

    elements = list(elements or DEFAULT_ELEMENTS)
    if len(elements) < MAX_SPECIES:
        elements = elements + [e for e in DEFAULT_ELEMENTS if e not in elements][: MAX_SPECIES - len(elements)]
    sg = _space_group_of(index, seed, space_groups)
    info = {"target_space_group": sg, "tries": 0}
    last = None
    last_reason = ""
    for t in range(max_tries):
        info["tries"] = t + 1
        rng = np.random.default_rng([seed, index, t])
        comp = _draw_composition(rng, sg, max_atoms, elements)
        if comp is None:
            return None, f"no composition of at most {max_atoms} atoms fits space group {sg}", info
        species, counts = comp
        crystal = pyxtal()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                crystal.from_random(3, sg, species, counts, factor=factor,
                                    random_state=int(rng.integers(2**31 - 1)))
        except Exception as exc:  # noqa: BLE001 - pyxtal raises many kinds
            last_reason = f"pyxtal failed for space group {sg} {dict(zip(species, counts))}: {exc}"
            continue
        if not crystal.valid:
            last_reason = f"pyxtal found no valid structure for space group {sg} {dict(zip(species, counts))}"
            continue
        s = crystal.to_pymatgen()
        try:
            found = SpacegroupAnalyzer(s, symprec=symprec).get_space_group_number()
        except Exception:  # noqa: BLE001
            found = None
        last = s
        if found == sg:
            return s, "", info
        last_reason = f"generated structure has space group {found}, not {sg}"
    if last is not None:
        log.debug("synthetic %d: %s after %d tries; kept with its own symmetry", index, last_reason, max_tries)
        info["note"] = last_reason
        return last, "", info
    return None, f"{last_reason} (after {max_tries} tries)", info
