import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent ({SHARED_DATA}): real-data test skipped")
    return SHARED_DATA


@pytest.fixture
def repo_root() -> Path:
    return ROOT


#: model settings small enough to train in a test (the five networks and the lattice control)
TINY_MODELS = {
    "sparse_cnn": {"channels": [8, 8, 16, 16, 16], "head": [16]},
    "pointnet": {"channels": [8, 16, 32], "groups": 4, "head": [16]},
    "xrd_fcn": {"channels": [4] * 10 + [8] * 3},
    "cgcnn": {"atom_fea_len": 8, "h_fea_len": 16, "n_conv": 1},
    "cogn": {"units": 16, "depth": 1},
    "lattice": {"hidden": [16]},
}
