"""One seeded train/val/test split per data set, optionally grouped so near-duplicates do not leak.

``group_by``:

* ``none``: every structure is its own group;
* ``formula``: structures with the same reduced formula share a split;
* ``structure``: structures that pymatgen's ``StructureMatcher`` finds equivalent share a split
  (matched within each reduced formula, so the cost stays near-linear in the data set).

Groups are shuffled with the seed and dealt greedily to the split that is furthest below its
target fraction, so the realised fractions are close to the asked ones even with large groups.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
log = logging.getLogger("rhosym.splits")


def _structure_groups(ids: list[str], formulas: list[str], structures: Mapping[str, object]) -> dict[str, str]:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    group_of: dict[str, str] = {}
    by_formula: dict[str, list[str]] = {}
    for i, f in zip(ids, formulas):
        by_formula.setdefault(f, []).append(i)
    for f, members in by_formula.items():
        if len(members) == 1:
            group_of[members[0]] = members[0]
            continue
        have = [m for m in members if structures.get(m) is not None]
        for m in members:
            group_of[m] = m
        if len(have) < 2:
            continue
        for k, grp in enumerate(matcher.group_structures([structures[m] for m in have])):
            # map back by identity: group_structures returns the same objects
            rep = None
            for s in grp:
                sid = next(m for m in have if structures[m] is s)
                rep = rep or sid
                group_of[sid] = f"{f}#{k}"
    return group_of


def assign_groups(groups: pd.Series, fractions=(0.8, 0.1, 0.1), seed: int = 42) -> pd.Series:
    """Split label for each row, given each row's group key. All rows of a group get the same split."""
    fr = np.asarray(fractions, dtype=float)
    if fr.sum() <= 0:
        raise ValueError("split fractions must not all be zero")
    fr = fr / fr.sum()
    sizes = groups.value_counts(sort=False)
    keys = np.array(sorted(sizes.index.astype(str)))
    rng = np.random.default_rng(seed)
    rng.shuffle(keys)
    n_total = len(groups)
    filled = np.zeros(3)
    split_of: dict[str, str] = {}
    sizes_by_str = {str(k): v for k, v in sizes.items()}
    for k in keys:
        deficit = fr * n_total - filled
        j = int(np.argmax(deficit))
        split_of[k] = SPLITS[j]
        filled[j] += sizes_by_str[k]
    return groups.astype(str).map(split_of)


def make_split(manifest: pd.DataFrame, fractions=(0.8, 0.1, 0.1), seed: int = 42, group_by: str = "formula",
               structures: Mapping[str, object] | None = None) -> pd.DataFrame:
    """``id, split, group`` for every ``ok`` row of ``manifest``."""
    ok = manifest[manifest["status"] == "ok"].copy()
    if group_by == "none":
        ok["group"] = ok["id"].astype(str)
    elif group_by in ("formula", "structure"):
        from pymatgen.core import Composition

        reduced = [Composition(f).reduced_formula if isinstance(f, str) and f else str(i)
                   for f, i in zip(ok["formula"], ok["id"])]
        ok["group"] = reduced
        if group_by == "structure":
            if structures is None:
                raise ValueError("group_by=structure needs the structures")
            gmap = _structure_groups(ok["id"].tolist(), reduced, structures)
            ok["group"] = ok["id"].map(gmap)
    else:
        raise ValueError(f"unknown group_by {group_by!r}")
    ok["split"] = assign_groups(ok["group"], fractions, seed).to_numpy()
    return ok[["id", "split", "group"]].reset_index(drop=True)


def class_distribution(manifest: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """Long table ``label, value, split, count`` for crystal systems and space groups."""
    df = split.merge(manifest[["id", "crystal_system", "space_group", "extinction_group"]], on="id")
    rows = []
    for label in ("crystal_system", "space_group", "extinction_group"):
        counts = df.groupby([label, "split"]).size().rename("count").reset_index()
        counts = counts.rename(columns={label: "value"})
        counts.insert(0, "label", label)
        counts["value"] = counts["value"].astype(str)
        rows.append(counts)
    return pd.concat(rows, ignore_index=True)


def run_split(manifest_path: str, ingest_paths: list[str], split_out: str, distribution_out: str,
              params) -> pd.DataFrame:
    """The ``split`` rule: read the manifest, split it (``params``: rhosym.settings.SplitSettings), write the
    split and its class distribution."""
    manifest = pd.read_parquet(manifest_path)
    structures = None
    if params.group_by == "structure":
        from rhosym.ingest import read_ingest, structure_from_json

        structures = {row["id"]: structure_from_json(row["structure"])
                      for p in ingest_paths for row in read_ingest(p, ["id", "structure"]) if row["structure"]}
    split = make_split(manifest, params.fractions, params.seed, params.group_by, structures)
    from rhosym.store import atomic_file

    with atomic_file(split_out) as tmp:
        split.to_parquet(tmp, index=False)
    dist = class_distribution(manifest, split)
    with atomic_file(distribution_out) as tmp:
        dist.to_csv(tmp, index=False)
    counts = split["split"].value_counts().reindex(SPLITS, fill_value=0)
    n_rej = int((manifest["status"] != "ok").sum())
    log.info("split (%s, seed %s): %s; %d rejected rows not split",
             params.group_by, params.seed,
             ", ".join(f"{k}={v}" for k, v in counts.items()), n_rej)
    return split
