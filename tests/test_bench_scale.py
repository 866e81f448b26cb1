"""`rhosym bench scale` at a small size: the made-up manifest, split and predictions go through the real
`split`, `metrics` and `tables` code and give the numbers they were built with (its timing and memory
against the 200k budgets are the benchmark's business, not a test's)."""

import numpy as np
import pandas as pd

from rhosym.bench import scale


def test_scale_steps_on_3000_rows(tmp_path):
    rows = 3000
    info = scale.step_make_manifest(tmp_path, int(rows / (1 - scale.MISSING) / 0.985) + 10)
    m = pd.read_parquet(next(tmp_path.rglob("manifest.parquet")))
    assert len(m) == info["rows"] and 0 < (m["status"] != "ok").mean() < 0.05
    assert set(m.loc[m["status"] == "ok", "space_group"].astype(int)) <= set(range(1, 231))
    for rule in ("formula", "none"):
        assert scale.step_split(tmp_path, rule)["rows"] == int((m["status"] == "ok").sum())
    made = scale.step_make_predictions(tmp_path, rows, seeds=1)
    assert made["files"] == len(scale.MODELS) + len(scale.REGRESSION_MODELS)
    res = scale.step_metrics(tmp_path, bootstrap=50)
    # every model misses its own ~3 % of the test ids: the common set is smaller than each model's
    assert res["common"] < res["rows"] <= rows
    cls = pd.read_csv(next(tmp_path.rglob("metrics/classification.csv")))
    sg = cls[cls["task"] == "space_group"].set_index("model")["top1"]
    for model, acc in scale.SG_ACCURACY.items():
        assert abs(sg[model] - acc) < 0.05, (model, sg[model], acc)
    assert cls.groupby("task")["n"].nunique().eq(1).all()  # one common test set per task
    assert np.isfinite(cls["margin_lattice_pp"]).all()
    assert scale.step_tables(tmp_path)["rows"] > 0
