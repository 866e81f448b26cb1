"""CGCNN-style atom features (``atom_init``) made from pymatgen's element data.

CGCNN (Xie & Grossman, PRL 120, 145301, 2018; Table S2) describes each element by one-hot encoded,
binned properties. We rebuild that table from :class:`pymatgen.core.Element` data rather than copying
CGCNN's ``atom_init.json``:

==========================  =====  ===========================================================
property                    bins   source / binning
==========================  =====  ===========================================================
group                        18    ``Element.group`` (lanthanides and actinides: group 3)
period                        7    ``Element.row``
electronegativity            10    Pauling ``Element.X``, equal-width bins over 0.5-4.0
covalent radius              10    Cordero radii (pymatgen ``CovalentRadius``), 0.25-2.5 Å
valence electrons            12    group for groups 1-12 (f block: 3), group - 10 for 13-18
first ionization energy      10    log10 of ``Element.ionization_energies[0]`` (eV), 0.5-1.45
electron affinity            10    ``Element.electron_affinity`` (eV), -3.0-3.7
block                         4    s, p, d, f
atomic volume                10    log10 of the molar volume (cm³/mol), 0.5-2.0
==========================  =====  ===========================================================

That makes :data:`N_FEATURES` = 91 (CGCNN's own file has 92 columns). Values outside a range fall into
the first or last bin; a missing property (e.g. the electronegativity of noble gases) leaves its block
all zero, as in CGCNN. Elements H (1) to Cf (98) are covered, the same set as pymatgen's X-ray scattering
table. The table is computed once and cached; :func:`write_table` saves it as JSON
(``{"Z": [..]}``, the layout of CGCNN's ``atom_init.json``) and ``src/rhosym/data/atom_init.json`` is the
shipped copy, which :func:`atom_init_table` reads when present (a test checks the two agree).
"""

from __future__ import annotations

import json
import math
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

MAX_Z = 98
BLOCKS = ("s", "p", "d", "f")
# (name, number of bins, low, high) for the continuous properties; value -> bin by equal widths.
_CONTINUOUS = (
    ("electronegativity", 10, 0.5, 4.0),
    ("covalent_radius", 10, 0.25, 2.5),
    ("log_ionization_energy", 10, 0.5, 1.45),
    ("electron_affinity", 10, -3.0, 3.7),
    ("log_molar_volume", 10, 0.5, 2.0),
)
N_FEATURES = 18 + 7 + 10 + 10 + 12 + 10 + 10 + 4 + 10
DATA_FILE = Path(__file__).resolve().parent / "data" / "atom_init.json"


def _bin(value: float | None, n: int, low: float, high: float) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    if value is None or not math.isfinite(value):
        return out
    i = int(np.clip(np.floor((value - low) / (high - low) * n), 0, n - 1))
    out[i] = 1.0
    return out


def _one_hot(i: int | None, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    if i is not None and 0 <= i < n:
        out[i] = 1.0
    return out


def element_properties(z: int) -> dict:
    """The raw (unbinned) properties of element ``z`` used by :func:`atom_features`; None when unknown."""
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core import Element

    el = Element.from_Z(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = int(el.group)
        block = str(el.block)
        if block == "f":
            group = 3
        valence = group if group <= 12 else group - 10
        if z == 2:
            valence = 2
        x = el.X
        ie = el.ionization_energies[0] if el.ionization_energies else None
        try:
            ea = float(el.electron_affinity)
        except Exception:  # noqa: BLE001 - missing data in pymatgen
            ea = None
        mv = el.molar_volume
    rad = CovalentRadius.radius.get(el.symbol)
    return {
        "group": group,
        "period": int(el.row),
        "electronegativity": float(x) if x is not None and math.isfinite(x) else None,
        "covalent_radius": float(rad) if rad is not None else None,
        "valence_electrons": valence,
        "log_ionization_energy": math.log10(ie) if ie else None,
        "electron_affinity": ea,
        "block": block,
        "log_molar_volume": math.log10(float(mv)) if mv else None,
    }


def atom_features(z: int) -> np.ndarray:
    """The :data:`N_FEATURES`-long one-hot feature vector of element ``z`` (computed from pymatgen)."""
    p = element_properties(z)
    parts = [
        _one_hot(p["group"] - 1, 18),
        _one_hot(p["period"] - 1, 7),
    ]
    cont = {name: (n, lo, hi) for name, n, lo, hi in _CONTINUOUS}
    parts.append(_bin(p["electronegativity"], *cont["electronegativity"]))
    parts.append(_bin(p["covalent_radius"], *cont["covalent_radius"]))
    parts.append(_one_hot(p["valence_electrons"] - 1, 12))
    parts.append(_bin(p["log_ionization_energy"], *cont["log_ionization_energy"]))
    parts.append(_bin(p["electron_affinity"], *cont["electron_affinity"]))
    parts.append(_one_hot(BLOCKS.index(p["block"]) if p["block"] in BLOCKS else None, 4))
    parts.append(_bin(p["log_molar_volume"], *cont["log_molar_volume"]))
    vec = np.concatenate(parts)
    assert vec.shape == (N_FEATURES,)
    return vec


def compute_table() -> np.ndarray:
    """(MAX_Z + 1, N_FEATURES) float32; row 0 (no element) is zero."""
    table = np.zeros((MAX_Z + 1, N_FEATURES), dtype=np.float32)
    for z in range(1, MAX_Z + 1):
        table[z] = atom_features(z)
    return table


@lru_cache(maxsize=1)
def atom_init_table() -> np.ndarray:
    """(MAX_Z + 1, N_FEATURES) float32 lookup by atomic number: the shipped JSON, else computed."""
    if DATA_FILE.is_file():
        data = json.loads(DATA_FILE.read_text())
        table = np.zeros((MAX_Z + 1, N_FEATURES), dtype=np.float32)
        for k, v in data.items():
            table[int(k)] = np.asarray(v, dtype=np.float32)
        return table
    return compute_table()


def write_table(path: str | Path = DATA_FILE) -> Path:
    """Save the computed table as ``{"Z": [0/1, ...]}`` JSON (CGCNN's ``atom_init.json`` layout)."""
    table = compute_table()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {str(z): [int(v) for v in table[z]] for z in range(1, MAX_Z + 1)}
    path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    return path


if __name__ == "__main__":  # pragma: no cover
    print(write_table())
