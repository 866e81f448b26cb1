"""The paper's figures and supplementary tables, from the metric tables of the ``metrics`` rule.

Every ``plot_*`` function takes tables (pandas DataFrames, keyed by data set where it matters) and writes
one PNG and one PDF; ``run_figure(which, ...)`` is what ``workflow/scripts/figure.py`` calls, reading
the files the rule names. Figures degrade gracefully: a model or data set without results gets an empty,
labelled panel ("no data"), and a figure with nothing at all to show says so in its middle.

Styling: models keep one colour (viridis samples of rising lightness, so they stay apart in greyscale)
and one hatch / marker everywhere; matplotlib's Agg backend; 200 dpi PNG plus vector PDF.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rhosym.registry import CLASS_TASKS, LATTICE_SUFFIX, MODELS, TASKS, model_display, model_order

os.environ.setdefault("MPLBACKEND", "Agg")

log = logging.getLogger("rhosym.figures")

TASK_NAMES = {n: t.display for n, t in TASKS.items()}
SPLIT_ORDER = ("train", "val", "test")
CS_SHORT = ("Tric.", "Mono.", "Orth.", "Tetr.", "Trig.", "Hex.", "Cub.")
# Classes per crystal system, in class order: space groups (ITA numbering) and extinction groups
# (numbered crystal system by crystal system, docs/formats.md; 1, 6, 33, 31, 6, 7, 17).
SG_PER_CS = (2, 13, 59, 68, 25, 27, 36)
EG_PER_CS = (1, 6, 33, 31, 6, 7, 17)
SEATTLE = 3  # triclinic, monoclinic, orthorhombic: the low-symmetry "Seattle zone"
_HATCHES = ("", "//", "\\\\", "xx", "..", "--", "++")
_MARKERS = ("X", "o", "s", "^", "D", "v", "P")
_LINESTYLES = ("-", "--", ":")
DPI = 200  # PNG resolution (tests lower it)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "xtick.labelsize": 8, "ytick.labelsize": 8, "hatch.linewidth": 0.6,
                         "pdf.fonttype": 42, "savefig.bbox": "tight"})
    return plt


def model_style(model: str) -> dict:
    """Colour, hatch and marker of a model (stable across figures; the lattice control is grey)."""
    from matplotlib import colormaps

    spec = MODELS.get(model)
    if spec is not None and spec.control:
        return {"color": "0.75", "hatch": "", "marker": "X"}
    studied = [m for m in model_order(MODELS) if MODELS[m].study and not MODELS[m].control]
    i = studied.index(model) if model in studied else len(studied) - 1
    colour = colormaps["viridis"](0.05 + 0.9 * i / max(1, len(studied) - 1))
    return {"color": colour, "hatch": _HATCHES[1 + i % (len(_HATCHES) - 1)], "marker": _MARKERS[1 + i % 5]}


def model_label(model: str, lattice: bool = False) -> str:
    """The display name of a model (``+lattice``: a lattice-conditioned variant)."""
    return model_display(model, lattice)


def order_models(models) -> list[str]:
    return model_order(models)


def _variant_labels(df: pd.DataFrame) -> pd.Series:
    """Display name plus what sets a variant apart (rhosym.evaluate.variant_label), one line per part."""
    from rhosym.evaluate import variant_label
    from rhosym.layout import is_lattice

    out = []
    for _, r in df.iterrows():
        lab = variant_label(r)
        lattice = is_lattice(str(r.get("group", "")))
        name = model_label(r["model"], lattice)
        rest = lab[len(str(r["model"])) + (len(LATTICE_SUFFIX) if lattice else 0):].strip()
        out.append(name + (f"\n({rest})" if rest else ""))
    return pd.Series(out, index=df.index)


def _is_unaugmented(group: str) -> bool:
    """A variant trained and tested without augmentation (layout tags -aug, -a<name>, -t<name>), plain or
    lattice-conditioned."""
    from rhosym.layout import parse_variant

    try:
        v = parse_variant(f"{group}-s0")
    except ValueError:
        return True
    return not (v["robust"] or v["augment"] or v["test"])


def _is_plain(group: str) -> bool:
    """An unaugmented variant that is not lattice-conditioned (-lat) either."""
    from rhosym.layout import is_lattice

    return _is_unaugmented(group) and not is_lattice(group)


def main_rows(df: pd.DataFrame, features: int = 1, splits: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The comparison rows of a metrics table: each data set's primary split, the feature set asked for
    (where a model has it), as sampled (no ``points``), trained on the data set itself and not fine-tuned,
    the plain (unaugmented) variant where there is one; a lattice-conditioned variant (``+lattice``) is a
    row of its own beside its model's."""
    if df is None or df.empty:
        return pd.DataFrame() if df is None else df
    d = df.copy()
    if splits:
        d = d[[splits.get(ds, sp) == sp for ds, sp in zip(d["dataset"], d["split"])]]
    if "points" in d.columns:
        d = d[d["points"].fillna(0).astype(int) == 0]
    if "trained_on" in d.columns:
        d = d[d["trained_on"].astype(str) == d["dataset"].astype(str)]
    if "group" in d.columns:
        d = d[~d["group"].astype(str).str.contains("-ft")]
    # plain variants first: a model trained or tested with an augmentation (-aug, -a<name>, -t<name>) is
    # shown only where it has no plain variant (its own rows stay in the tables, labelled)
    from rhosym.layout import LATTICE_TAG, is_lattice

    groups = d["group"].astype(str) if "group" in d.columns else pd.Series("", index=d.index)
    lattice = groups.map(is_lattice)
    plain = groups.map(lambda g: _is_plain(g.replace(LATTICE_TAG + "-", "-", 1)))  # plain but for its -lat
    d = (d.assign(_pref=(d["features"].astype(int) != features).astype(int) * 2 + (~plain).astype(int),
                  _lat=lattice)
         .sort_values("_pref", kind="stable")
         .drop_duplicates(["dataset", "split", "task", "model", "trained_task", "input", "_lat"])
         .drop(columns=["_pref", "_lat"]))
    return d


def save(fig, out_png: str | Path, out_pdf: str | Path | None = None) -> None:
    """Write the figure as PNG (``DPI``, 200 by default) and PDF and close it."""
    plt = _plt()
    for p in (out_png, out_pdf):
        if p:
            Path(p).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(p, dpi=DPI)
    plt.close(fig)


def _empty_figure(message: str, out_png, out_pdf, title: str = ""):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    if title:
        ax.set_title(title)
    save(fig, out_png, out_pdf)
    return fig


def _no_data(ax, text: str = "no data") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_linestyle("--")
        s.set_edgecolor("0.5")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.35")


# --------------------------------------------------------------------------------------------- fig 3
def plot_fig3(classification: Mapping[str, pd.DataFrame], out_png, out_pdf=None, features: int = 1,
              f1: str = "macro_f1", splits: Mapping[str, str] | None = None):
    """Grouped bars: test top-1 accuracy (bars, mean over seeds, error bar: the bootstrap 95 % interval
    over test structures, or ± sd when there is none) and F1 (black diamonds) per model on the common
    test set (n in each panel's title); the lattice-only control is the grey bar on the left and a
    dashed line. Row per data set, column per classification task."""
    plt = _plt()
    frames = [main_rows(df, features, splits) for ds, df in classification.items() if df is not None and len(df)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty_figure("No classification results to plot.", out_png, out_pdf, "Fig. 3")
    allc = pd.concat(frames, ignore_index=True)
    datasets = [ds for ds in classification if ds in set(allc["dataset"])]
    tasks = [t for t in CLASS_TASKS if t in set(allc["task"])]
    allc["label"] = _variant_labels(allc)
    variants = (allc[["model", "label"]].drop_duplicates()
                .assign(o=lambda d: d["model"].map(lambda m: MODELS[m].order if m in MODELS else 99))
                .sort_values(["o", "label"]))
    labels = variants["label"].tolist()
    models_of = dict(zip(variants["label"], variants["model"]))
    fig, axes = plt.subplots(len(datasets), len(tasks), figsize=(1.0 + 0.75 * len(labels) * len(tasks),
                             1.0 + 2.8 * len(datasets)), squeeze=False, sharey=True)
    x = np.arange(len(labels))
    for i, ds in enumerate(datasets):
        for j, task in enumerate(tasks):
            ax = axes[i, j]
            sub = allc[(allc["dataset"] == ds) & (allc["task"] == task)].drop_duplicates("label").set_index("label")
            for k, lab in enumerate(labels):
                st = model_style(models_of[lab])
                if lab not in sub.index:
                    ax.text(k, 2, "n/a", ha="center", va="bottom", fontsize=7, color="0.4", rotation=90)
                    continue
                r = sub.loc[lab]
                acc = 100 * float(r["top1"])
                lo, hi = (100 * float(r.get("top1_lo", np.nan)), 100 * float(r.get("top1_hi", np.nan)))
                if np.isfinite(lo):
                    yerr = [[max(acc - lo, 0)], [max(hi - acc, 0)]]
                else:
                    sd = 100 * float(r.get("top1_sd", 0) or 0)
                    yerr = [[sd], [sd]]
                ax.bar(k, acc, width=0.75, color=st["color"], hatch=st["hatch"], edgecolor="black", lw=0.6,
                       yerr=yerr, error_kw={"elinewidth": 0.8, "capsize": 2.5, "ecolor": "black"})
                ax.text(k, min(acc + yerr[1][0], 100) + 1.5, f"{acc:.1f}", ha="center", va="bottom", fontsize=6.5)
                fv = r.get(f1, np.nan)
                if pd.notna(fv):
                    ax.plot(k, 100 * float(fv), marker="D", ms=4.5, mfc="black", mec="white", mew=0.8, ls="none")
                if MODELS.get(models_of[lab]) is not None and MODELS[models_of[lab]].control:
                    ax.axhline(acc, color="0.45", ls="--", lw=0.8, zorder=0)
            n = int(sub["n"].iloc[0]) if len(sub) else 0
            seeds = int(sub["n_seeds"].max()) if len(sub) and "n_seeds" in sub else 1
            ax.set_xticks(x, labels, rotation=40, ha="right", fontsize=7)
            ax.set_xlim(-0.6, len(labels) - 0.4)
            ax.set_ylim(0, 115)
            ax.set_yticks(range(0, 101, 20))
            ax.grid(axis="y", color="0.85", lw=0.5)
            ax.set_axisbelow(True)
            title = f"{TASK_NAMES.get(task, task)}\n" if i == 0 else ""
            ax.set_title(f"{title}n = {n} test structures, {seeds} seed{'s' if seeds != 1 else ''}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{ds}\ntest accuracy / F1 (%)")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="0.8", edgecolor="black", label="top-1 accuracy (bar; 95 % interval)"),
               Line2D([], [], marker="D", ls="none", mfc="black", mec="white",
                      label=f"{f1.replace('_', '-').replace('f1', 'F1')} (◆)"),
               Line2D([], [], color="0.45", ls="--", label="lattice-only control")]
    fig.legend(handles=handles, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    save(fig, out_png, out_pdf)
    return fig


# --------------------------------------------------------------------------------------------- fig 4
def _seattle_rectangle(ax, n: int = SEATTLE):
    import matplotlib.patheffects as pe
    from matplotlib.patches import Rectangle

    r = Rectangle((-0.5, -0.5), n, n, fill=False, edgecolor="#ffc20a", lw=2.2, ls="-", zorder=5,
                  label="Seattle zone")
    r.set_path_effects([pe.Stroke(linewidth=3.6, foreground="black"), pe.Normal()])
    ax.add_patch(r)
    return r


def plot_fig4(rates: Mapping[str, Mapping[str, pd.DataFrame | None]], out_png, out_pdf=None,
              models: Sequence[str] | None = None, annotate: bool = True):
    """7x7 row-normalized crystal-system confusion matrices: row per data set, column per model.

    ``rates[ds][model]`` is the ``-rates.csv`` table (index true, columns predicted) or ``None``.
    The low-symmetry block (triclinic, monoclinic, orthorhombic) is outlined in every panel.
    """
    plt = _plt()
    datasets = list(rates)
    models = order_models(models or [m for ds in rates for m, v in rates[ds].items() if v is not None])
    if not datasets or not models:
        return _empty_figure("No crystal-system confusion matrices to plot.", out_png, out_pdf, "Fig. 4")
    fig, axes = plt.subplots(len(datasets), len(models), figsize=(0.9 + 2.3 * len(models),
                             0.9 + 2.45 * len(datasets)), squeeze=False, layout="constrained")
    im = None
    for i, ds in enumerate(datasets):
        first = next((k for k, m in enumerate(models) if rates[ds].get(m) is not None), 0)
        for j, m in enumerate(models):
            ax = axes[i, j]
            mat = rates[ds].get(m)
            if i == 0:
                ax.set_title(model_label(m))
            if mat is None:
                _no_data(ax, "no data\n(not trained)")
                ax.set_xlim(-0.5, 6.5)
                ax.set_ylim(6.5, -0.5)
                ax.set_aspect("equal")
                if j == 0:
                    ax.set_ylabel(f"{ds}\ntrue")
                continue
            a = np.asarray(mat, dtype=float)
            im = ax.imshow(a, cmap="Blues", vmin=0, vmax=1)
            _grey_absent_rows(ax, a)
            if annotate:
                for (r, c), v in np.ndenumerate(a):
                    if v >= 0.005:
                        ax.text(c, r, f"{v:.2f}".lstrip("0") if v < 1 else "1", ha="center", va="center",
                                fontsize=5.5, color="white" if v > 0.55 else "black")
            _seattle_rectangle(ax)
            ax.set_xticks(range(7), CS_SHORT, rotation=90, fontsize=6.5)
            ax.set_yticks(range(7), CS_SHORT if j == first else [""] * 7, fontsize=6.5)
            if j == 0:
                ax.set_ylabel(f"{ds}\ntrue")
            if i == len(datasets) - 1:
                ax.set_xlabel("predicted")
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, pad=0.01)
        cb.set_label("fraction of true class (row-normalized)")
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(fill=False, edgecolor="#ffc20a", lw=2,
                              label="Seattle zone (triclinic, monoclinic, orthorhombic)"),
                        Patch(facecolor="0.82", label="grey row: no test structure of that class")],
               loc="outside upper left", frameon=False, ncol=2)
    save(fig, out_png, out_pdf)
    return fig


def _cmap_white_zero():
    from matplotlib import colormaps

    return colormaps["Blues"].with_extremes(bad="white")  # exact zeros are masked: no hit stays white


def _grey_absent_rows(ax, a: np.ndarray, grey: str = "0.82") -> int:
    """Shade the rows of classes with no test structure (all-zero rows of a row-normalized matrix)."""
    from matplotlib.colors import ListedColormap

    absent = a.sum(axis=1) == 0
    if absent.any():
        over = np.where(absent[:, None], 1.0, np.nan) * np.ones((1, a.shape[1]))
        ax.imshow(over, cmap=ListedColormap([grey]), vmin=0, vmax=1, interpolation="nearest", zorder=2)
    return int(absent.sum())


def _class_boundaries(task: str) -> np.ndarray:
    """Matrix coordinates between crystal systems (classes are numbered crystal system by crystal system)."""
    per = SG_PER_CS if task == "space_group" else EG_PER_CS
    if task == "extinction_group":
        try:  # from the shipped extinction table, when it is there
            from rhosym.symmetry import CRYSTAL_SYSTEMS, crystal_system, extinction_group

            cs_of = {extinction_group(sg): CRYSTAL_SYSTEMS.index(crystal_system(sg)) for sg in range(1, 231)}
            per = tuple(np.bincount([cs_of[e] for e in sorted(cs_of)], minlength=7))
        except Exception as exc:  # noqa: BLE001 - the boundaries are decoration only
            log.debug("extinction-group boundaries from the built-in counts: %s", exc)
    return np.cumsum(per)[:-1] - 0.5


def plot_fig4_supp(rates: Mapping[str, Mapping[str, Mapping[str, pd.DataFrame | None]]], out_png, out_pdf=None,
                   models: Sequence[str] | None = None, gamma: float = 0.4):
    """101-class (extinction group) and 230-class (space group) confusion heatmaps.

    ``rates[ds][task][model]``: row-normalized tables. One row of panels per (data set, task), one column
    per model; thin lines separate crystal systems; colour uses a power norm (``gamma``) so sparse
    off-diagonal mishits stay visible.
    """
    from matplotlib.colors import PowerNorm

    plt = _plt()
    rows = [(ds, t) for ds in rates for t in ("extinction_group", "space_group") if t in rates[ds]]
    models = order_models(models or [m for ds in rates for t in rates[ds] for m, v in rates[ds][t].items()
                                     if v is not None])
    if not rows or not models:
        return _empty_figure("No extinction- or space-group confusion matrices to plot.", out_png, out_pdf,
                             "Supplementary confusion matrices")
    fig, axes = plt.subplots(len(rows), len(models), figsize=(1.0 + 2.8 * len(models), 0.4 + 2.8 * len(rows)),
                             squeeze=False, layout="constrained")
    norm = PowerNorm(gamma=gamma, vmin=0, vmax=1)
    cmap = _cmap_white_zero()
    im = None
    for i, (ds, task) in enumerate(rows):
        first = next((k for k, m in enumerate(models) if rates[ds][task].get(m) is not None), 0)
        for j, m in enumerate(models):
            ax = axes[i, j]
            mat = rates[ds][task].get(m)
            if i == 0:
                ax.set_title(model_label(m))
            if j == 0:
                ax.set_ylabel(f"{ds}: {TASK_NAMES[task].lower()}\ntrue class")
            if mat is None:
                _no_data(ax)
                ax.set_aspect("equal")
                continue
            a = np.asarray(mat, dtype=float)
            n = a.shape[0]
            im = ax.imshow(np.ma.masked_equal(a, 0.0), cmap=cmap, norm=norm, interpolation="nearest")
            _grey_absent_rows(ax, a, "0.9")
            for b in _class_boundaries(task):
                ax.axhline(b, color="0.55", lw=0.35)
                ax.axvline(b, color="0.55", lw=0.35)
            ticks = [0] + list(range(49, n, 50)) if n > 150 else [0] + list(range(19, n, 20))
            ax.set_xticks(ticks, [str(t + 1) for t in ticks], fontsize=6.5)
            ax.set_yticks(ticks, [str(t + 1) for t in ticks] if j == first else [""] * len(ticks), fontsize=6.5)
            if i == len(rows) - 1:
                ax.set_xlabel("predicted class")
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.5, pad=0.01)
        cb.set_label(f"fraction of true class (power scale, γ={gamma})")
    save(fig, out_png, out_pdf)
    return fig


# --------------------------------------------------------------------------------------------- fig S7
def plot_figS7(distributions: Mapping[str, pd.DataFrame], out_png, out_pdf=None):
    """Crystal-system (bars) and space-group (step lines) distributions per split; a row per data set.

    ``distributions[ds]`` is ``split_distribution.csv`` (``label, value, split, count``). Shares are
    percentages of each split, so splits of different sizes compare directly.
    """
    plt = _plt()
    datasets = [ds for ds, d in distributions.items() if d is not None and len(d)]
    if not datasets:
        return _empty_figure("No split distributions to plot.", out_png, out_pdf, "Supplementary Fig. 7")
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 0.6 + 2.9 * len(datasets)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.9]})
    greys = {"train": "0.15", "val": "0.55", "test": "0.85"}
    hatch = {"train": "", "val": "//", "test": ".."}
    for i, ds in enumerate(datasets):
        d = distributions[ds].copy()
        d["value"] = d["value"].astype(str)
        splits = [s for s in SPLIT_ORDER if s in set(d["split"])]
        ax = axes[i, 0]
        cs = d[d["label"] == "crystal_system"]
        from rhosym.evaluate import CRYSTAL_SYSTEMS

        w = 0.8 / max(1, len(splits))
        for k, s in enumerate(splits):
            c = cs[cs["split"] == s].set_index("value")["count"].reindex(CRYSTAL_SYSTEMS, fill_value=0)
            tot = c.sum()
            share = 100 * c / tot if tot else c * 0.0
            ax.bar(np.arange(7) + (k - (len(splits) - 1) / 2) * w, share, width=w, color=greys[s],
                   hatch=hatch[s], edgecolor="black", lw=0.5, label=f"{s} (n={int(tot)})")
        ax.set_xticks(range(7), CS_SHORT)
        ax.set_ylabel(f"{ds}\nshare of split (%)")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.22)  # headroom for the legend
        ax.legend(frameon=False, loc="upper center", ncol=len(splits), fontsize=7, handlelength=1.5)
        ax.grid(axis="y", color="0.88", lw=0.5)
        ax.set_axisbelow(True)
        if i == 0:
            ax.set_title("Crystal systems")
        if i == len(datasets) - 1:
            ax.set_xlabel("crystal system")
        ax = axes[i, 1]
        sg = d[d["label"] == "space_group"]
        x = np.arange(1, 231)
        for k, s in enumerate(splits):
            c = sg[sg["split"] == s].set_index("value")["count"].reindex([str(v) for v in x], fill_value=0)
            tot = c.sum()
            share = 100 * c.to_numpy(dtype=float) / tot if tot else np.zeros(230)
            ax.step(x, share, where="mid", color=greys[s] if s != "test" else "0.45", ls=_LINESTYLES[k % 3],
                    lw=0.9, label=s)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
        top = ax.get_ylim()[1]
        for b, name, width in zip(np.concatenate([[0.5], np.cumsum(SG_PER_CS) + 0.5]), [*CS_SHORT, ""],
                                  [*SG_PER_CS, 0]):
            ax.axvline(b, color="0.75", lw=0.5, zorder=0)
            if name and width >= 5:  # triclinic (1-2) is too narrow for a label
                ax.text(b + 1, top * 0.97, name, fontsize=6.5, va="top", color="0.3")
        ax.set_xlim(0.5, 230.5)
        ax.set_ylabel("share of split (%)")
        ax.legend(frameon=False, loc="upper right", bbox_to_anchor=(1.0, 0.9), ncol=len(splits), fontsize=7)
        if i == 0:
            ax.set_title("Space groups")
        if i == len(datasets) - 1:
            ax.set_xlabel("space-group number")
    fig.tight_layout()
    save(fig, out_png, out_pdf)
    return fig


# --------------------------------------------------------------------------------------------- fig S8
def _panels(plt, d: pd.DataFrame, width: float = 3.2, height: float = 2.7, **kw):
    """A figure with one panel per data set (rows) and classification task (columns) of ``d``:
    ``(fig, n_rows, [(i, j, data set, task, ax, rows of d), ...])``."""
    datasets = list(dict.fromkeys(d["dataset"]))
    tasks = [t for t in CLASS_TASKS if t in set(d["task"])]
    fig, axes = plt.subplots(len(datasets), len(tasks), figsize=(0.8 + width * len(tasks), 0.9 + height * len(datasets)),
                             squeeze=False, **kw)
    return fig, len(datasets), [(i, j, ds, task, axes[i, j], d[(d["dataset"] == ds) & (d["task"] == task)])
                                for i, ds in enumerate(datasets) for j, task in enumerate(tasks)]


def _label_grid_panel(ax, i: int, j: int, n_rows: int, ds: str, task: str, xlabel: str) -> None:
    """Titles on the top row (task), y labels on the first column (data set), x labels on the bottom row."""
    if i == 0:
        ax.set_title(TASK_NAMES.get(task, task))
    if j == 0:
        ax.set_ylabel(f"{ds}\ntest accuracy (%)")
    if i == n_rows - 1:
        ax.set_xlabel(xlabel)


def plot_figS8(sweep: pd.DataFrame, out_png, out_pdf=None):
    """Test accuracy against the number of sampled points (an inference-time sweep of ONE trained model
    per line, not a retraining per size). ``sweep``: rows of :func:`rhosym.evaluate.sweep_table`."""
    plt = _plt()
    from matplotlib import ticker

    if sweep is None or sweep.empty:
        return _empty_figure("No points sweep results (figures.points_sweep is empty or no density model "
                             "was trained for classification).", out_png, out_pdf, "Supplementary Fig. 8")
    datasets = list(dict.fromkeys(sweep["dataset"]))
    tasks = [t for t in CLASS_TASKS if t in set(sweep["task"])]
    fig, axes = plt.subplots(len(datasets), len(tasks), figsize=(0.8 + 3.4 * len(tasks), 0.9 + 2.7 * len(datasets)),
                             squeeze=False, sharex=True)
    for i, ds in enumerate(datasets):
        for j, task in enumerate(tasks):
            ax = axes[i, j]
            sub = sweep[(sweep["dataset"] == ds) & (sweep["task"] == task)].copy()
            if sub.empty:
                _no_data(ax)
            else:
                sub["label"] = _variant_labels(sub)
                seen: dict[str, int] = {}
                for k, (lab, g) in enumerate(sub.groupby("label", sort=False)):
                    st = model_style(g["model"].iloc[0])
                    v = seen[g["model"].iloc[0]] = seen.get(g["model"].iloc[0], -1) + 1
                    g = g.sort_values("max_points")
                    ax.plot(g["max_points"], 100 * g["top1"], marker=st["marker"], color=st["color"],
                            mfc="white" if v % 2 else st["color"], ls=_LINESTYLES[k % 3], mec="black", mew=0.5, clip_on=False,
                            label=lab.replace("\n", " "))
                ax.set_xscale("log")
                # ticks at the swept sizes only, in plain numbers (log minor labels overlap)
                sizes = sorted({int(n) for n in sub["max_points"]})
                ax.xaxis.set_major_locator(ticker.FixedLocator(sizes))
                ax.xaxis.set_minor_locator(ticker.NullLocator())
                ax.xaxis.set_major_formatter(ticker.FixedFormatter([f"{n:,}" for n in sizes]))
                ax.tick_params(axis="x", labelrotation=30 if len(sizes) > 4 else 0)
                lo, hi = 100 * sub["top1"].min(), 100 * sub["top1"].max()
                lo, hi = max(0.0, lo - 5), min(100.0, hi + 5)
                if hi - lo < 10:
                    lo, hi = max(0.0, min(lo, hi - 10)), min(100.0, max(hi, lo + 10))
                ax.set_ylim(lo, hi)
                ax.grid(color="0.88", lw=0.5)
                ax.legend(frameon=False)
            _label_grid_panel(ax, i, j, len(datasets), ds, task, "points per structure at inference (max_points)")
    fig.suptitle("Inference-time sweep: one trained model per line, test split evaluated with at most N points",
                 fontsize=8.5, y=1.0)
    fig.tight_layout()
    save(fig, out_png, out_pdf)
    return fig


# --------------------------------------------------------------------------------------------- fig S11
def plot_figS11(histories: pd.DataFrame, out_png, out_pdf=None):
    """Training curves: row per (data set, task); left loss (train solid, validation dashed), right the
    validation metric, one colour per model. ``histories``: history.csv rows plus experiment key columns."""
    plt = _plt()
    if histories is None or histories.empty:
        return _empty_figure("No training histories to plot.", out_png, out_pdf, "Supplementary Fig. 11")
    rows = list(dict.fromkeys(zip(histories["dataset"], histories["task"])))
    ds_order = list(dict.fromkeys(histories["dataset"]))
    task_order = list(TASK_NAMES)
    rows.sort(key=lambda r: (ds_order.index(r[0]), task_order.index(r[1]) if r[1] in task_order else 99))
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 0.6 + 2.3 * len(rows)), squeeze=False)
    for i, (ds, task) in enumerate(rows):
        sub = histories[(histories["dataset"] == ds) & (histories["task"] == task)].copy()
        sub["label"] = _variant_labels(sub.drop_duplicates(["model", "input", "features"])).reindex(sub.index)
        keys = sub.drop_duplicates(["model", "input", "features"])
        labs = _variant_labels(keys)
        axl, axm = axes[i]
        metric_name = "validation metric"
        seen: dict[str, int] = {}
        for (_, key), lab in zip(keys.iterrows(), labs):
            g = sub[(sub["model"] == key["model"]) & (sub["input"] == key["input"])
                    & (sub["features"] == key["features"])].sort_values("epoch")
            st = model_style(key["model"])
            k = seen[key["model"]] = seen.get(key["model"], -1) + 1  # variants of a model: hollow markers
            mk = {"marker": st["marker"], "ms": 3.5, "mfc": "white" if k % 2 else st["color"],
                  "markevery": max(1, len(g) // 8)}
            lab = lab.replace("\n", " ")
            axl.plot(g["epoch"], g["train_loss"], color=st["color"], ls="-", lw=1.1, label=f"{lab} train")
            axl.plot(g["epoch"], g["val_loss"], color=st["color"], ls="--", lw=1.1, label=f"{lab} val", **mk)
            axm.plot(g["epoch"], g["val_metric"], color=st["color"], lw=1.2, label=lab, **mk)
            if "metric" in g.columns and g["metric"].notna().any():
                metric_name = f"validation {g['metric'].dropna().iloc[0]}"
        title = f"{ds}: {TASK_NAMES.get(task, task).lower()}"
        axl.set_title(f"{title}: loss")
        axm.set_title(f"{title}: {metric_name}")
        axl.set_ylabel("loss")
        axm.set_ylabel(metric_name)
        losses = pd.concat([sub["train_loss"], sub["val_loss"]]).dropna()
        if len(losses) and losses.gt(0).all() and losses.max() / losses.min() > 10:
            from matplotlib.ticker import NullFormatter

            axl.set_yscale("log")
            axl.yaxis.set_minor_formatter(NullFormatter())
        for ax in (axl, axm):
            from matplotlib.ticker import MaxNLocator

            ax.grid(color="0.9", lw=0.5)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axm.legend(frameon=False, fontsize=7, loc="best")
        if i == 0:
            from matplotlib.lines import Line2D

            axl.legend(handles=[Line2D([], [], color="black", ls="-", label="train"),
                                Line2D([], [], color="black", ls="--", label="validation")],
                       frameon=False, loc="upper right")
    fig.tight_layout()
    save(fig, out_png, out_pdf)
    return fig


# --------------------------------------------------------------------------------------------- fig S8
def plot_figS8_trained(classification: pd.DataFrame, out_png, out_pdf=None):
    """Accuracy against point-cloud size with a model TRAINED (and tested) at each size (experiments
    with ``points``), as the paper's Supplementary Fig. 8: mean over seeds with the bootstrap interval."""
    plt = _plt()
    d = classification if classification is not None else pd.DataFrame()
    if not d.empty:
        d = d[d["points"].fillna(0).astype(int) > 0]
    if d.empty:
        return _empty_figure("No experiments trained at several point-cloud sizes (experiments: points: [...]).",
                             out_png, out_pdf, "Supplementary Fig. 8")
    fig, n_rows, panels = _panels(plt, d, width=3.4)
    for i, j, ds, task, ax, sub in panels:
        if sub.empty:
            _no_data(ax)
        for (model, inp, tt), g in sub.groupby(["model", "input", "trained_task"], sort=False):
            g = g.sort_values("points")
            st = model_style(model)
            y = 100 * g["top1"].to_numpy(float)
            lo, hi = 100 * g["top1_lo"].to_numpy(float), 100 * g["top1_hi"].to_numpy(float)
            ax.errorbar(g["points"], y, yerr=[np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)],
                        marker=st["marker"], color=st["color"], mec="black", mew=0.5, capsize=2.5,
                        label=f"{model_label(model)} ({inp}{', joint' if tt == 'symmetry' else ''})")
        ax.set_xscale("log")
        ax.grid(color="0.88", lw=0.5)
        _label_grid_panel(ax, i, j, n_rows, ds, task, "points per structure (trained and tested at this size)")
        if len(sub):
            ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    save(fig, out_png, out_pdf)
    return fig


# --------------------------------------------------------------------------------------------- figRobust
def plot_figRobust(robust: pd.DataFrame, out_png, out_pdf=None):
    """Accuracy against perturbation strength: one panel per perturbation (rows: data set × task), one
    line per model and variant (dashed: trained with an augmentation, named in the legend), bootstrap 95 %
    bands; one legend for every line of every panel."""
    plt = _plt()
    if robust is None or robust.empty:
        return _empty_figure("No robustness results (no trained model of robustness.models).", out_png, out_pdf,
                             "Robustness")
    rows = list(dict.fromkeys(zip(robust["dataset"], robust["task"])))
    perts = list(dict.fromkeys(robust["perturbation"]))
    fig, axes = plt.subplots(len(rows), len(perts), figsize=(0.6 + 2.6 * len(perts), 0.8 + 2.4 * len(rows)),
                             squeeze=False)
    for i, (ds, task) in enumerate(rows):
        for j, pert in enumerate(perts):
            ax = axes[i, j]
            sub = robust[(robust["dataset"] == ds) & (robust["task"] == task) & (robust["perturbation"] == pert)]
            if sub.empty:
                _no_data(ax, "n/a for\nthese models")
            for (model, _group), g in sub.groupby(["model", "group"], sort=False):
                g = g.sort_values("order")
                st = model_style(model)
                x = np.arange(len(g))
                plain = _is_plain(str(_group)) and not (bool(g["augmented"].iloc[0]) if "augmented" in g else False)
                label = _variant_labels(pd.DataFrame([{"model": model, "group": _group}])).iloc[0].replace("\n", " ")
                ax.plot(x, 100 * g["top1"], marker=st["marker"], color=st["color"], mec="black", mew=0.4, ms=4,
                        ls="-" if plain else "--", label=label)
                ax.fill_between(x, 100 * g["top1_lo"], 100 * g["top1_hi"], color=st["color"], alpha=0.15, lw=0)
                ax.set_xticks(x, [str(v) for v in g["strength_label"]], fontsize=6.5, rotation=30)
            unit = sub["unit"].iloc[0] if len(sub) and "unit" in sub else ""
            unit = str(unit) if isinstance(unit, str) and unit.strip() and unit.lower() != "nan" else ""
            ax.set_xlabel(f"{pert} ({unit})" if unit else pert, fontsize=8)
            ax.set_ylim(0, 100)
            ax.grid(color="0.9", lw=0.5)
            if j == 0:
                ax.set_ylabel(f"{ds}: {TASK_NAMES.get(task, task).lower()}\naccuracy (%)")
    handles: dict = {}
    for ax in axes.ravel():  # one legend for every line of every panel
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    n = int(robust["n"].max()) if "n" in robust else 0
    fig.suptitle(f"Robustness to experimental-like density on the common test set (n ≤ {n})", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95 - 0.04 * ((len(handles) + 2) // 3)))
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=min(3, len(handles)),
                   frameon=False, fontsize=6.5, bbox_to_anchor=(0.5, 0.95))
    save(fig, out_png, out_pdf)
    return fig


# --------------------------------------------------------------------------------------------- tables
def _md(df: pd.DataFrame, title: str, empty: str, floatfmt: str = ".2f") -> str:
    from rhosym.evaluate import to_markdown

    return to_markdown(df, title, empty, floatfmt)


def supplementary_tables(classification: pd.DataFrame, regression: pd.DataFrame,
                         splits: Mapping[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """The paper's Supplementary Tables 1-3 equivalents, on each data set's common test set.

    * ``s1``: classification: every variant, task: n, accuracy (mean ± sd over seeds, bootstrap 95 %
      interval), macro-F1, margin over the lattice control (percentage points), and the full-test-set
      accuracy; the lattice control is its own (control) row;
    * ``s2``: regression MAE with one density feature (all models), same columns;
    * ``s3``: regression MAE of the density models with 1 and 4 features, and the relative change.
    """
    from rhosym.evaluate import readable_table

    base = ["dataset", "split", "task", "model", "seeds", "n"]
    s1 = readable_table(classification, "classification") if classification is not None and len(classification) \
        else pd.DataFrame(columns=base + ["accuracy (%)", "95% CI", "macro-F1 (%)", "margin over lattice (pp)"])
    s2 = pd.DataFrame(columns=base + ["unit", "MAE", "95% CI", "R2", "margin over lattice (MAE reduction)"])
    s3 = pd.DataFrame(columns=["dataset", "split", "model", "input", "task"])
    if regression is not None and len(regression):
        r1 = regression[regression["features"].astype(int) == 1]
        if len(r1):
            s2 = readable_table(r1, "regression")
        rr = regression.pivot_table(index=["dataset", "split", "model", "input", "task"], columns="features",
                                    values="mae", aggfunc="first")
        if 1 in rr.columns and 4 in rr.columns:
            rr = rr[[1, 4]].dropna()
            if len(rr):
                s3 = rr.rename(columns={1: "MAE 1 feature", 4: "MAE 4 features"}).reset_index()
                s3.columns.name = None
                s3["change (%)"] = 100 * (s3["MAE 4 features"] / s3["MAE 1 feature"] - 1)
    return {"s1": s1, "s2": s2, "s3": s3}


def finder_on_input(model: str, cell: str, graphs_primitive: bool = True) -> str:
    """Whether a symmetry finder (spglib, the labels' finder) touched a model's input: through the data
    set's cell (its setting and origin: rhosym.cells.USES_SYMMETRY) and, for the graph models, through
    the graphs' standard primitive cell (``graphs.cell: primitive``)."""
    from rhosym import inputs
    from rhosym.cells import USES_SYMMETRY

    parts = ["cell"] if cell and USES_SYMMETRY.get(cell, True) else []
    if graphs_primitive and model in MODELS and inputs.of_model(model).primitive_cell:
        parts.append("graph's primitive cell")
    return f"yes ({', '.join(parts)})" if parts else "no"


def results_table(classification: pd.DataFrame, regression: pd.DataFrame,
                  cells: Mapping[str, str] | None = None, graphs_primitive: bool = True) -> pd.DataFrame:
    """One table of every result: data set, split rule, cell, whether a symmetry finder touched the input
    (:func:`finder_on_input`), model, task, accuracy and macro-F1 or MAE (mean ± sd, bootstrap interval),
    n, margin over the lattice control, n and value on the full test set."""
    from rhosym.evaluate import readable_table

    parts = []
    for df, kind in ((classification, "classification"), (regression, "regression")):
        if df is None or df.empty:
            continue
        t = readable_table(df, kind)
        t["symmetry finder on input"] = [finder_on_input(str(m), (cells or {}).get(d, ""), graphs_primitive)
                                         for m, d in zip(df["model"], df["dataset"])]
        if kind == "classification":
            t = t.rename(columns={"accuracy (%)": "value", "macro-F1 (%)": "macro-F1",
                                  "margin over lattice (pp)": "margin over lattice",
                                  "accuracy full (%)": "value full"})
            t.insert(5, "metric", "accuracy (%)")
        else:
            t = t.rename(columns={"MAE": "value", "margin over lattice (MAE reduction)": "margin over lattice",
                                  "MAE full": "value full"})
            t.insert(5, "metric", "MAE (" + t.pop("unit") + ")")
            t["macro-F1"] = ""
        parts.append(t)
    cols = ["dataset", "split", "cell", "symmetry finder on input", "task", "model", "metric", "value", "95% CI",
            "macro-F1", "seeds", "n", "margin over lattice", "n_full", "value full"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    out["cell"] = out["dataset"].map(lambda d: (cells or {}).get(d, ""))
    return out[[c for c in cols if c in out.columns]]


def write_tables(classification: pd.DataFrame, regression: pd.DataFrame, outputs: Mapping[str, str],
                 splits: Mapping[str, str] | None = None, cells: Mapping[str, str] | None = None,
                 graphs_primitive: bool = True) -> dict:
    """Write the tables to ``outputs`` (keys ``s1_csv, s1_md, s2_csv, s2_md, s3_csv, s3_md`` and, when
    given, ``results_csv, results_md``: every result in one table)."""
    t = supplementary_tables(classification, regression, splits)
    if "learning_csv" in outputs:
        lt = learning_table(classification, splits)
        lt.to_csv(outputs["learning_csv"], index=False, float_format="%.6g")
        Path(outputs["learning_md"]).write_text(_md(
            lt, "Learning curves: power law 1 − accuracy = a · f^(−b) over the training fraction f, and the "
            "fraction at which it would reach the strongest lattice control (f > 1: extrapolation)",
            "No model trained at three or more training fractions (experiments: fractions: [...]).",
            floatfmt=".3f"))
    if "results_csv" in outputs:
        r = results_table(classification, regression, cells, graphs_primitive)
        r.to_csv(outputs["results_csv"], index=False)
        Path(outputs["results_md"]).write_text(_md(r, "Results on each data set's common test set",
                                                   "No results.", floatfmt=".2f"))
    titles = {"s1": ("Supplementary Table 1: symmetry classification on the common test set (%)",
                     "No classification experiments."),
              "s2": ("Supplementary Table 2: property regression, MAE on the common test set (1 density feature)",
                     "No regression experiments: this configuration trains no band-gap or formation-energy model."),
              "s3": ("Supplementary Table 3: regression MAE with 1 vs 4 density features",
                     "No experiment pairs with 1 and 4 density features (set experiments: features: [1, 4] "
                     "for a density model and a regression task).")}
    for k, df in t.items():
        Path(outputs[f"{k}_csv"]).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(outputs[f"{k}_csv"], index=False, float_format="%.6g")
        Path(outputs[f"{k}_md"]).write_text(_md(df, *titles[k], floatfmt=".4f"))
        log.info("table %s: %d rows", k, len(df))
    return t


# --------------------------------------------------------------------------------------------- I/O
def _read_csv(path) -> pd.DataFrame | None:
    p = Path(path)
    if not p.exists():
        log.warning("missing input %s; its panel is left empty", p)
        return None
    try:
        return pd.read_csv(p)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def read_rates(confusion_dir, task: str, models: Sequence[str] | None = None, features: int = 1,
               dataset: str | None = None, split: str | None = None) -> dict[str, pd.DataFrame]:
    """``{model: rates table}`` of one task from a ``metrics/confusion`` folder (its ``index.csv``): per
    model its main variant (primary split, features asked for, falling back to 1, grid before random,
    trained on the data set itself, not fine-tuned, no points, not +lattice), separate networks before the
    joint one."""
    out: dict[str, pd.DataFrame] = {}
    folder = Path(confusion_dir)
    idx = _read_csv(folder / "index.csv") if folder.is_dir() else None
    if idx is None or idx.empty:
        return out
    idx = idx[idx["task"] == task]
    if dataset is not None:
        idx = idx.assign(dataset=dataset)
    idx = main_rows(idx, features, {dataset: split} if dataset and split else None)
    from rhosym.layout import is_lattice

    lattice = idx["group"].astype(str).map(is_lattice) if "group" in idx.columns else False
    idx = idx.assign(_r=(idx["input"] == "random").astype(int), _j=(idx["trained_task"] != task).astype(int),
                     _l=pd.Series(lattice, index=idx.index).astype(int))  # a +lattice variant only if alone
    for _, r in idx.sort_values(["_l", "_j", "_r"], kind="stable").iterrows():
        if models is not None and r["model"] not in models:
            continue
        if r["model"] not in out:
            out[r["model"]] = pd.read_csv(folder / r["file"], index_col=0)
    return out


def read_histories(paths: Sequence[str]) -> pd.DataFrame:
    """history.csv files of ``{ds}/models/{model}/{task}/{variant}/`` with key columns added."""
    from rhosym import layout

    frames = []
    for path in paths:
        p = Path(path)
        h = _read_csv(p)
        if h is None or h.empty:
            continue
        v = layout.parse_variant(p.parent.name)
        h = h.assign(dataset=p.parents[4].name, model=p.parents[2].name, task=p.parents[1].name,
                     input=v["input"], features=v["features"], points=v["points"], seed=v["seed"],
                     split=v["split"], group=layout.group_of(p.parent.name))
        frames.append(h)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --------------------------------------------------------------------------------------------- targets
def _tables(paths, datasets) -> dict[str, pd.DataFrame | None]:
    return {ds: _read_csv(p) for ds, p in zip(datasets, paths)}


def _concat(frames) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def make_fig3(inputs, outputs, params):
    f = params.get("figures", {})
    plot_fig3(_tables(inputs["classification"], params["datasets"]), outputs["png"], outputs["pdf"],
              features=int(f.get("features", 1)), f1=f.get("f1", "macro_f1"), splits=params.get("splits"))


def make_fig4(inputs, outputs, params):
    feats = int(params.get("figures", {}).get("features", 1))
    rates = {ds: read_rates(d, "crystal_system", features=feats, dataset=ds, split=params.get("splits", {}).get(ds))
             for ds, d in zip(params["datasets"], inputs["confusion"])}
    plot_fig4(rates, outputs["png"], outputs["pdf"])


def make_fig4_supp(inputs, outputs, params):
    feats = int(params.get("figures", {}).get("features", 1))
    sp = params.get("splits", {})
    rates = {ds: {t: read_rates(d, t, features=feats, dataset=ds, split=sp.get(ds))
                  for t in ("extinction_group", "space_group")} for ds, d in zip(params["datasets"], inputs["confusion"])}
    rates = {ds: {t: r for t, r in v.items() if r} for ds, v in rates.items()}
    plot_fig4_supp({ds: v for ds, v in rates.items() if v}, outputs["png"], outputs["pdf"])


def make_figS7(inputs, outputs, params):
    plot_figS7(_tables(inputs["distribution"], params["datasets"]), outputs["png"], outputs["pdf"])


def make_figS8(inputs, outputs, params):
    plot_figS8_trained(_concat(_tables(inputs["classification"], params["datasets"]).values()), outputs["png"],
                       outputs["pdf"])


def make_figS8_sweep(inputs, outputs, params):
    plot_figS8(_concat(_read_csv(p) for p in inputs["sweep"]), outputs["png"], outputs["pdf"])


def make_figS11(inputs, outputs, params):
    plot_figS11(read_histories(list(inputs["history"])), outputs["png"], outputs["pdf"])


def make_figRobust(inputs, outputs, params):
    plot_figRobust(_concat(_read_csv(p) for p in inputs["robust"]), outputs["png"], outputs["pdf"])


def plot_figCalibration(calib: pd.DataFrame, out_png, out_pdf=None, splits: Mapping[str, str] | None = None):
    """Reliability diagrams: test accuracy against the predicted top-1 probability (temperature-scaled on
    the validation split), one panel per data set and task, one line per model (plain variants, the
    data set's primary split, seeds pooled); the diagonal is perfect calibration."""
    plt = _plt()
    d = calib if calib is not None else pd.DataFrame()
    if not d.empty:
        if splits:
            d = d[[splits.get(ds, sp) == sp for ds, sp in zip(d["dataset"], d["split"])]]
        d = d[d["trained_on"].astype(str) == d["dataset"].astype(str)]
        d = d[d["group"].astype(str).map(_is_plain)]
        d = d[d["points"].fillna(0).astype(int) == 0]
    if d.empty:
        return _empty_figure("No classification predictions with probabilities.", out_png, out_pdf,
                             "Reliability diagrams")
    fig, n_rows, panels = _panels(plt, d, width=3.0, height=2.8)
    for i, j, ds, task, ax, sub in panels:
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":")
        for (model, _group), g in sub.groupby(["model", "group"], sort=False):
            st = model_style(model)
            g = g.sort_values("bin")
            ax.plot(g["confidence"], g["accuracy"], marker=st["marker"], color=st["color"], mec="black",
                    mew=0.4, ms=3.5, lw=1, label=model_label(model))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        _finish_panel(ax, i, j, n_rows, ds, task, "top-1 probability (calibrated)", len(sub) > 0)
        if j == 0:
            ax.set_ylabel(f"{ds}\ntest accuracy")
    return _finish_figure(fig, out_png, out_pdf)


def _finish_panel(ax, i: int, j: int, n_rows: int, ds: str, task: str, xlabel: str, legend: bool) -> None:
    ax.grid(color="0.9", lw=0.5)
    _label_grid_panel(ax, i, j, n_rows, ds, task, xlabel)
    if legend:
        ax.legend(frameon=False, fontsize=6)


def _finish_figure(fig, out_png, out_pdf):
    fig.tight_layout()
    save(fig, out_png, out_pdf)
    return fig


def _from_metrics(plot, key: str):
    """A figure function ``make_<name>(inputs, outputs, params)`` that plots the concatenated tables of
    ``inputs[key]`` with the data sets' primary splits."""

    def make(inputs, outputs, params):
        plot(_concat(_read_csv(p) for p in inputs[key]), outputs["png"], outputs["pdf"], params.get("splits"))

    return make


def learning_rows(classification: pd.DataFrame, splits: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The learning-curve points of a metrics table: each data set's primary split, trained on itself,
    1 feature, as sampled, unaugmented, with the training ``fraction`` of its variant."""
    from rhosym.layout import is_lattice, parse_variant

    d = classification if classification is not None else pd.DataFrame()
    if d.empty:
        return d
    d = d.copy()
    if splits:
        d = d[[splits.get(ds, sp) == sp for ds, sp in zip(d["dataset"], d["split"])]]
    d = d[(d["trained_on"].astype(str) == d["dataset"].astype(str)) & (d["points"].fillna(0).astype(int) == 0)
          & (d["features"].astype(int) == 1) & d["group"].astype(str).map(_is_unaugmented)]
    d = d[~d["group"].astype(str).str.contains("-ft")]

    def fraction(g: str) -> float:
        try:
            return parse_variant(f"{g}-s0")["fraction"]
        except ValueError:
            return 1.0

    # a lattice-conditioned network is a curve of its own: <model>+lattice
    lattice = d["group"].astype(str).map(is_lattice)
    return d.assign(fraction=d["group"].astype(str).map(fraction),
                    model=[m + LATTICE_SUFFIX if lat else m for m, lat in zip(d["model"].astype(str), lattice)])


def learning_table(classification: pd.DataFrame, splits: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per data set, task and model with three or more training fractions: the power law
    ``1 − accuracy = a · f^(−b)`` fitted (least squares in log-log) to the mean accuracies, and the
    fraction f* of today's training set at which it would reach the strongest lattice control's accuracy at
    the full training set (an extrapolation beyond the measured fractions when f* > 1)."""
    d = learning_rows(classification, splits)
    cols = ["dataset", "task", "model", "fractions", "a", "b", "control_top1", "crossing_fraction", "note"]
    rows = []
    if d.empty:
        return pd.DataFrame(columns=cols)
    for (ds, task), g in d.groupby(["dataset", "task"], sort=False):
        ctrl = g[g["control"].astype(bool) & (g["fraction"] == 1.0)]
        c_top1 = float(ctrl["top1"].max()) if len(ctrl) else np.nan
        for model, m in g.groupby("model", sort=False):
            m = m.groupby("fraction")["top1"].mean()
            if len(m) < 3 or MODELS.get(model) is not None and MODELS[model].control:
                continue
            f, err = m.index.to_numpy(float), np.clip(1.0 - m.to_numpy(float), 1e-4, None)
            slope, intercept = np.polyfit(np.log(f), np.log(err), 1)
            a, b = float(np.exp(intercept)), float(-slope)
            cross = np.nan
            if np.isfinite(c_top1) and b > 0:
                cross = float((a / max(1.0 - c_top1, 1e-4)) ** (1.0 / b))
            note = ("already above the control" if np.isfinite(cross) and cross <= 1 else
                    "extrapolation" if np.isfinite(cross) else "no crossing (error does not fall)")
            rows.append({"dataset": ds, "task": task, "model": model, "fractions": ", ".join(f"{x:g}" for x in f),
                         "a": a, "b": b, "control_top1": c_top1, "crossing_fraction": cross, "note": note})
    return pd.DataFrame(rows, columns=cols)


def plot_figLearning(classification: pd.DataFrame, out_png, out_pdf=None, splits: Mapping[str, str] | None = None):
    """Learning curves: test accuracy against the fraction of the training split (log scale), per data
    set and task (data sets with a curve only), one line per model with more than one fraction (bootstrap
    95 % bands; a lattice control trained at several sizes dotted, a +lattice network dash-dotted), the
    strongest lattice control at the full training set as a dashed line."""
    plt = _plt()
    d = learning_rows(classification, splits)
    if not d.empty:
        curve = d.groupby(["dataset", "task", "model"])["fraction"].transform("nunique") > 1
        d = d[curve | d["control"].astype(bool)]
        # only the data sets with a curve: a panel holding nothing but the control's line says nothing
        d = d[d["dataset"].isin(set(d.loc[curve.reindex(d.index, fill_value=False), "dataset"]))]
    if d.empty or d["fraction"].nunique() < 2:
        return _empty_figure("No learning curves (set experiments: fractions: [0.125, 0.25, 0.5, 1]).", out_png,
                             out_pdf, "Learning curves")
    fig, n_rows, panels = _panels(plt, d)
    for i, j, ds, task, ax, sub in panels:
        ctrl = sub[sub["control"].astype(bool) & (sub["fraction"] == 1.0)]
        if len(ctrl):
            ax.axhline(100 * ctrl["top1"].max(), color="0.5", ls="--", lw=1, label="lattice control (all data)")
        for model, g in sub.groupby("model", sort=False):  # a control trained at several sizes: its curve too
            control = bool(g["control"].astype(bool).any())
            g = g.groupby("fraction")[["top1", "top1_lo", "top1_hi"]].mean().sort_index()
            if len(g) < 2:
                continue
            base = model.removesuffix(LATTICE_SUFFIX)
            lat = base != model  # a +lattice network: its model's colour, dash-dotted
            st = model_style(base)
            x = g.index.to_numpy(float)
            ax.plot(x, 100 * g["top1"], marker=st["marker"], color=st["color"], mec="black", mew=0.4, ms=4,
                    ls=":" if control else "-." if lat else "-", label=model_label(base, lat))
            ax.fill_between(x, 100 * g["top1_lo"], 100 * g["top1_hi"], color=st["color"], alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)
        _finish_panel(ax, i, j, n_rows, ds, task, "fraction of the training split", len(sub) > 0)
    return _finish_figure(fig, out_png, out_pdf)


make_figCalibration = _from_metrics(plot_figCalibration, "calibration")
make_figLearning = _from_metrics(plot_figLearning, "classification")


def make_tables(inputs, outputs, params):
    cls = _concat(_read_csv(p) for p in inputs["classification"])
    reg = _concat(_read_csv(p) for p in inputs["regression"])
    write_tables(cls, reg, outputs, params.get("splits"), params.get("cells"), params.get("graphs_primitive", True))


def run_figure(which: str, inputs: Mapping[str, Sequence[str]], outputs: Mapping[str, str],
               params: Mapping | None = None) -> None:
    """Entry point of ``workflow/scripts/figure.py``: the registry's function for figure ``which``
    (rhosym.registry.FIGURES). ``params['datasets']`` lists the data sets in the order of the
    per-data-set ``inputs`` lists."""
    from rhosym.registry import FIGURES

    if which not in FIGURES:
        raise ValueError(f"unknown figure {which!r}; known: {', '.join(FIGURES)}")
    fn = globals()[FIGURES[which].function]
    fn({k: list(v) for k, v in inputs.items()}, dict(outputs), dict(params or {}))
    log.info("%s written: %s", which, ", ".join(str(v) for v in outputs.values()))
