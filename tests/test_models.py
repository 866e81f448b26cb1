"""The study networks (five plus the lattice control), the spconv CPU shim and the training benchmark
(CPU, small widths)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rhosym import registry as R
from rhosym.bench.train import in_features_of, synthetic_samples
from rhosym.models import INPUT_KIND, MODELS, build_model, collate, model_config, sample_size, spconv_shim
from rhosym.models.common import GaussianExpansion, n_params, segment_max

EXTRA_MODELS = ("dense_cnn",)  # built by build_model for the benchmark, not a study model

DENSITY_KW = {"points": 300, "frame": 16.0, "voxel": 0.5}
# Small widths so that every test runs in about a second on one core.
SMALL = {
    "sparse_cnn": {"channels": [8, 8, 16, 16, 32], "blocks": [0, 1, 1, 1, 1], "head": [32], "dropout": 0.0},
    "dense_cnn": {"channels": [8, 8, 16, 16, 32], "blocks": [0, 1, 1, 1, 1], "head": [32], "dropout": 0.0},
    "pointnet": {"channels": [16, 32, 64], "groups": 4, "head": [32, 16], "dropout": 0.0},
    "xrd_fcn": {"channels": [4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 32, 32, 16], "dropout": 0.0},
    "cgcnn": {"atom_fea_len": 16, "h_fea_len": 32},
    "cogn": {"units": 32, "depth": 2, "edge_layers": 2},
    "lattice": {"hidden": [16, 16], "dropout": 0.0},
    "lattice_sym": {"hidden": [16, 16], "dropout": 0.0},
    "classical": {},
    "symops": {"hidden": [16], "dropout": 0.0},
    "periodic_cnn": {"channels": [4, 8], "strides": [2, 2], "head": [8], "dropout": 0.0},
}
LEARNED = [m for m in MODELS if not (R.MODELS[m].fit_free or R.MODELS[m].boosted)]  # classical: test_symops_models; lattice_gbm: test_lattice_gbm


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: the suite shares two cores, and thread spinning makes timings erratic."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _lattice_samples(n: int, seed: int = 0) -> list[dict]:
    """Per-sample dicts of the lattice control: the 13 features of rhosym.loaders.lattice_features."""
    from rhosym.inputs.lattice import features as lattice_features

    rng = np.random.default_rng(seed)
    params = np.column_stack([rng.uniform(3, 12, (n, 3)), rng.uniform(60, 120, (n, 3))])
    return [{"lattice": f} for f in lattice_features(params)]


def _samples(name: str, n: int = 4, seed: int = 0) -> list[dict]:
    if INPUT_KIND[name] == "lattice":
        return _lattice_samples(n, seed)
    kw = DENSITY_KW if INPUT_KIND[name] == "density" else {}
    if name in ("cgcnn", "cogn"):
        kw = {"atoms": 8, "n_atom_fea": 16, "neighbours": 6}
    return synthetic_samples(name, n, seed=seed, **kw)


def _in_features(name: str, samples: list[dict]) -> int:
    if INPUT_KIND[name] == "lattice":
        return int(samples[0]["lattice"].shape[0])
    return in_features_of(name, samples)


def test_registry_contract():
    assert set(MODELS) >= {"sparse_cnn", "pointnet", "xrd_fcn", "cgcnn", "cogn", "lattice", "lattice_sym"}
    assert "dense_cnn" not in MODELS
    assert dict(INPUT_KIND) == {"sparse_cnn": "density", "pointnet": "density", "xrd_fcn": "xrd",
                                "cgcnn": "cgcnn", "cogn": "cogn", "lattice": "lattice", "dense_cnn": "density",
                                "lattice_sym": "lattice_sym", **{m: INPUT_KIND[m] for m in MODELS if m not in (
                                    "sparse_cnn", "pointnet", "xrd_fcn", "cgcnn", "cogn", "lattice",
                                    "lattice_sym")}}
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", 2, False, 1)


def test_architecture_block_is_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="atom_fea_lenn"):  # a typo is an error, not ignored
        build_model("cgcnn", 2, False, 16, {"atom_fea_lenn": 8})
    with pytest.raises(ValidationError, match="dropout"):
        build_model("pointnet", 2, False, 1, {"dropout": 1.5})
    with pytest.raises(ValueError, match="same length"):
        build_model("sparse_cnn", 2, False, 1, {"channels": [8, 8], "blocks": [0, 1, 1, 1, 1]})
    # the module reads the resolved dict: defaults of the registry class, then the block
    cg = build_model("cgcnn", 3, False, 16, {"atom_fea_len": 24, "n_conv": 2})
    assert cg.embedding.out_features == 24 and len(cg.convs) == 2 and cg.expand.n == 41
    assert model_config("lattice", None, False).model_dump() == {"hidden": [128, 128, 64], "dropout": 0.1}
    assert model_config("cgcnn", {"n_conv": 2}, True).n_conv == 2


def test_spconv_shim_patches_every_caller():
    patched = spconv_shim.apply()
    assert {"spconv.pytorch.cppcore", "spconv.pytorch.ops", "spconv.pytorch.hash",
            "spconv.pytorch.utils"} <= set(patched)
    assert spconv_shim.is_applied()
    from spconv.pytorch import ops

    if not torch.cuda.is_available():
        assert ops.get_current_stream() == 0
    assert spconv_shim.apply() == patched  # idempotent


def test_sparse_cnn_forward_backward_on_cpu():
    samples = _samples("sparse_cnn", 3)
    model = build_model("sparse_cnn", 7, False, 1, SMALL["sparse_cnn"])
    batch = collate("sparse_cnn", samples)
    batch["features"].requires_grad_(True)
    out = model(batch)
    assert out.shape == (3, 7)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 3, 6])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first_conv = model.encoder[0].conv.weight.grad
    assert first_conv.abs().sum() > 0  # gradient reached the first sparse convolution
    assert batch["features"].grad.abs().sum() > 0


def test_sparse_input_averages_points_sharing_a_voxel():
    from rhosym.models.sparse_cnn import SparseCNN

    s = {"xyz": np.zeros((3, 3), np.float32), "features": np.array([[1.0], [3.0], [5.0]], np.float32),
         "voxels": np.array([[1, 2, 3], [1, 2, 3], [0, 0, 0]], np.int32), "spatial_shape": np.array([4, 4, 4])}
    x = SparseCNN.sparse_input(collate("sparse_cnn", [s, s]))
    assert x.features.shape == (4, 1) and x.indices.dtype == torch.int32
    got = {tuple(i.tolist()): float(f) for i, f in zip(x.indices, x.features[:, 0])}
    assert got == {(0, 0, 0, 0): 5.0, (0, 1, 2, 3): 2.0, (1, 0, 0, 0): 5.0, (1, 1, 2, 3): 2.0}
    from rhosym.models.dense_cnn import DenseCNN

    dense = DenseCNN.dense_input(collate("dense_cnn", [s]))
    assert dense.shape == (1, 1, 4, 4, 4)
    assert float(dense[0, 0, 1, 2, 3]) == 2.0 and float(dense.sum()) == 7.0


@pytest.mark.parametrize("name", LEARNED + list(EXTRA_MODELS))
@pytest.mark.parametrize("regression", [False, True])
def test_shapes_every_model_both_heads(name, regression):
    samples = _samples(name, 3)
    n_out = 1 if regression else 11
    model = build_model(name, n_out, regression, _in_features(name, samples), SMALL[name])
    out = model(collate(name, samples))
    assert out.shape == (3, n_out) and torch.isfinite(out).all()
    model.eval()
    with torch.no_grad():  # one sample alone (eval and train) works too
        assert model(collate(name, samples[:1])).shape == (1, n_out)
    model.train()
    assert model(collate(name, samples[:1])).shape == (1, n_out)


def test_published_sizes():
    xrd = build_model("xrd_fcn", 7, False, 1)
    n = n_params(xrd)
    print(f"XRD FCN parameters: {n}")
    assert 2.7e6 < n < 2.9e6
    assert sum(isinstance(m, torch.nn.Conv1d) and m.kernel_size == (5,) for m in xrd.modules()) == 13
    cogn = build_model("cogn", 1, True, 92)
    assert len(cogn.blocks) == 5 and cogn.expand.n == 32 and float(cogn.expand.centres[-1]) == 8.0
    cg = build_model("cgcnn", 230, False, 92)
    assert cg.expand.n == 41 and len(cg.convs) == 3 and cg.embedding.out_features == 64
    assert model_config("sparse_cnn", None, False).model_dump() == {"channels": [128, 128, 256, 512, 1024],
                                                       "blocks": [0, 1, 2, 2, 3], "strides": [1, 2, 2, 2, 2],
                                                       "kernel": 3, "head": [512, 256], "dropout": 0.0}
    assert model_config("sparse_cnn", None, True).blocks == [0, 2, 3, 4, 3]
    assert model_config("dense_cnn", None, True).head == [512, 256, 128]
    sp = build_model("sparse_cnn", 1, True, 4, {"channels": [8, 8, 8, 8, 1024], "blocks": [0, 0, 0, 0, 1]})
    assert [m.out_features for m in sp.head if isinstance(m, torch.nn.Linear)] == [512, 256, 128, 1]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in sp.head) == 3
    pn = build_model("pointnet", 7, False, 1)
    assert [m.out_features for m in pn.layers] == [64, 128, 1024]
    lat = build_model("lattice", 230, False, 13)
    assert [m.out_features for m in lat.modules() if isinstance(m, torch.nn.Linear)] == [128, 128, 64, 230]
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in lat.modules()) == 3


def test_lattice_control_reads_the_lattice_features():
    from rhosym.inputs.lattice import features as lattice_features

    f = lattice_features(np.array([[4.0, 4.0, 4.0, 90, 90, 90], [3.0, 3.0, 5.0, 90, 90, 120]]))
    assert f.shape == (2, 13) and f.dtype == np.float32
    np.testing.assert_allclose(f[0], [4, 4, 4, 90, 90, 90, 0, 0, 0, 1, 1, 1, 4], atol=1e-6)
    np.testing.assert_allclose(f[1, 6:9], [0, 0, -0.5], atol=1e-6)
    np.testing.assert_allclose(f[1, 12], np.cbrt(9 * 5 * np.sqrt(3) / 2), rtol=1e-6)
    samples = [{"lattice": x, "y": k} for k, x in enumerate(f)]
    batch = collate("lattice", samples)
    assert set(batch) == {"lattice", "y"} and batch["lattice"].shape == (2, 13)
    assert sample_size("lattice", samples[0]) == 1
    model = build_model("lattice", 7, False, 13, SMALL["lattice"]).eval()
    with torch.no_grad():
        out = model(batch)
        assert out.shape == (2, 7)
        # the answer depends on the cell shape only: the same lattice gives the same logits
        torch.testing.assert_close(model(collate("lattice", [samples[1]]))[0], out[1])


@pytest.mark.parametrize("name", LEARNED)
def test_regression_head_reaches_negative_targets(name):
    torch.manual_seed(0)
    samples = _samples(name, 4)
    model = build_model(name, 1, True, _in_features(name, samples), SMALL[name])
    last = [m for m in model.modules() if not list(m.children())][-1]
    assert isinstance(last, (torch.nn.Linear, torch.nn.Conv1d))  # no ReLU at the end
    batch = collate(name, samples)
    y = torch.tensor([-3.0, -2.0, -1.5, -2.5])
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(25):
        opt.zero_grad()
        loss = torch.nn.functional.l1_loss(model(batch).squeeze(1), y)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(batch).squeeze(1)
    assert (pred < 0).all(), pred


@pytest.mark.parametrize("name", LEARNED + list(EXTRA_MODELS))
def test_loss_falls_when_overfitting_a_tiny_batch(name):
    torch.manual_seed(0)
    samples = _samples(name, 4, seed=1)
    model = build_model(name, 4, False, _in_features(name, samples), SMALL[name])
    batch = collate(name, samples)
    y = torch.tensor([0, 1, 2, 3])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3 if name == "xrd_fcn" else 1e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_segment_group_norm_matches_torch_groupnorm():
    from rhosym.models.pointnet import SegmentGroupNorm

    torch.manual_seed(0)
    gn = SegmentGroupNorm(4, 16)
    ref = torch.nn.GroupNorm(4, 16)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.uniform_(-1, 1)
        ref.weight.copy_(gn.weight)
        ref.bias.copy_(gn.bias)
    a, b = torch.randn(50, 16) * 3 + 1, torch.randn(20, 16)
    out = gn(torch.cat([a, b]), torch.tensor([0] * 50 + [1] * 20), 2)
    for x, o in ((a, out[:50]), (b, out[50:])):
        expected = ref(x.T.unsqueeze(0))[0].T  # Conv1d layout (1, C, n)
        torch.testing.assert_close(o, expected, atol=1e-5, rtol=1e-5)


def test_segment_max_and_gaussians():
    x = torch.randn(10, 3, requires_grad=True)
    idx = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    out = segment_max(x, idx, 3)
    for k in range(3):
        torch.testing.assert_close(out[k], x[idx == k].max(0).values)
    out.sum().backward()
    assert float(x.grad.sum()) == 9.0  # one arg-max per segment and column
    g = GaussianExpansion(0.0, 8.0, step=0.2)
    assert g.n == 41
    e = g(torch.tensor([2.0]))
    assert int(e.argmax()) == 10 and float(e.max()) == pytest.approx(1.0)


def test_collate_graphs_offsets_and_sizes():
    samples = _samples("cogn", 3)
    batch = collate("cogn", samples)
    n = [len(s["atom_fea"]) for s in samples]
    e = [len(s["edge_index"]) for s in samples]
    assert batch["atom_fea"].shape[0] == sum(n) and batch["edge_index"].shape == (sum(e), 2)
    assert batch["edge_index"][e[0]:e[0] + e[1]].min() >= n[0]
    assert batch["edge_index"].max() < sum(n) and batch["batch"].tolist() == sum(([i] * k for i, k in enumerate(n)), [])
    assert batch["node_weight"].shape == (sum(n),) and batch["edge_vec"].shape == (sum(e), 3)
    assert sample_size("cogn", samples[0]) == n[0] + e[0]
    d = _samples("pointnet", 2)
    for s, y in zip(d, (3, 5)):
        s["y"] = y
    db = collate("pointnet", d)
    assert db["y"].dtype == torch.int64 and db["y"].tolist() == [3, 5]
    assert db["counts"].tolist() == [len(s["xyz"]) for s in d] and db["voxels"].dtype == torch.int32
    assert sample_size("pointnet", d[0]) == len(d[0]["xyz"])
    assert sample_size("xrd_fcn", {"pattern": np.zeros(10001, np.float32)}) == 8192
    xb = collate("xrd_fcn", [{"pattern": np.ones(10001, np.float32), "y": 0.5}] * 2)
    assert xb["pattern"].shape == (2, 10001) and xb["y"].dtype == torch.float32


def test_bench_train_runs(capsys):
    from rhosym.bench import train as bench_train

    rc = bench_train.main(["--models", "xrd_fcn", "cgcnn", "cogn", "--steps", "1", "--warmup", "0",
                           "--batch-size", "2", "--no-compare", "--classes", "7"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "train_samples_per_s" in out and "cogn" in out
    row = bench_train._compare_one("sparse_cnn", SMALL["sparse_cnn"], _samples("sparse_cnn", 2), "cpu", 1, 0, 7)
    assert row["train_s_per_batch"] > 0 and row["peak_mem_mb"] >= 0 and row["params"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the failure only happens without CUDA")
def test_sparse_backward_needs_the_shim_without_cuda():
    from spconv.pytorch import ops

    samples = _samples("sparse_cnn", 1)
    model = build_model("sparse_cnn", 2, False, 1, SMALL["sparse_cnn"])
    batch = collate("sparse_cnn", samples)
    ops.get_current_stream = spconv_shim._ORIGINAL  # undo the patch where backward needs it
    try:
        with pytest.raises((AssertionError, RuntimeError)):
            model(batch).sum().backward()
    finally:
        spconv_shim.apply()
    model(batch).sum().backward()  # and works again
