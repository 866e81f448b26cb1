"""Child process of tests/test_faults.py: runs one stage with a deterministic pause point, to be SIGKILLed.

``python -m tests.fault_child SPEC_JSON`` (run from the repository root). SPEC: ``{"stage": name,
"args": {...}, "pause": {...}, "marker": path}``. The pause is installed by monkeypatching inside this
process only (no hook in the package):

* ``{"at": "store"}``: after the first ``rhosym.store.write_array`` of the stage, i.e. the temporary
  ``<store>.tmp-<pid>`` exists and holds one complete array but the store's attributes are not written yet;
* ``{"at": "parquet"}``: after ``DataFrame.to_parquet`` wrote the temporary ``<out>.tmp-<pid>``, before
  the rename;
* ``{"at": "epoch", "epoch": k, "batch": b}``: in training epoch ``k`` after ``b`` optimizer steps (the
  wrapper sits on ``rhosym.train.progress``, which iterates the training loader of each epoch).

At the pause the child writes ``marker`` (JSON: what it was doing, the temporary path, its pid)
atomically and sleeps; the parent kills it with SIGKILL. :data:`STAGES` is shared with the parent, which
reruns the same stage in process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

PAUSE_S = 300.0  # the parent kills the child long before; a child never killed fails loudly


def _pause(marker: str, info: dict) -> None:
    info = {**info, "pid": os.getpid()}
    part = Path(f"{marker}.part")
    part.write_text(json.dumps(info))
    os.replace(part, marker)
    time.sleep(PAUSE_S)
    raise SystemExit(f"fault_child: paused {PAUSE_S} s at {info} and was never killed")


def install_pause(pause: dict, marker: str) -> None:
    at = pause["at"]
    if at == "store":
        import rhosym.store as store

        orig = store.write_array

        def write_array(group, name, data, *args, **kwargs):
            arr = orig(group, name, data, *args, **kwargs)
            _pause(marker, {"at": "store", "array": name, "tmp": str(group.store.root)})
            return arr

        store.write_array = write_array
    elif at == "parquet":
        import pandas as pd

        orig = pd.DataFrame.to_parquet

        def to_parquet(self, path, *args, **kwargs):
            out = orig(self, path, *args, **kwargs)
            if ".tmp-" in Path(str(path)).name:
                _pause(marker, {"at": "parquet", "tmp": str(path), "rows": len(self)})
            return out

        pd.DataFrame.to_parquet = to_parquet
    elif at == "epoch":
        import rhosym.train as T

        orig = T.progress
        epoch, batch = int(pause["epoch"]), int(pause.get("batch", 1))

        def progress(iterable, desc, total=None, logger=None):
            it = orig(iterable, desc, total, logger)
            if desc != f"epoch {epoch}":
                return it

            def paused():
                for i, x in enumerate(it):
                    if i == batch:
                        _pause(marker, {"at": "epoch", "epoch": epoch, "batch": batch})
                    yield x

            return paused()

        T.progress = progress
    else:
        raise ValueError(f"unknown pause point {at!r}")


# ------------------------------------------------------------------------------------------ stages
def train_job(args: dict):
    """The TrainJob of the kill/resume test: a real (tiny) PointNet with dropout and augmentation on the
    fixture density stores, CPU, one thread, no workers, no cache."""
    from rhosym.train import TrainJob

    cfg = {"epochs": int(args["epochs"]), "lr": 0.01, "batch_budget": 200, "max_batch_size": 6, "patience": 0,
           "model": {"channels": [8, 16], "groups": 2, "head": [16], "dropout": 0.3}}
    return TrainJob(model="pointnet", task="crystal_system", input="grid", stores=list(args["stores"]),
                    manifest=args["manifest"], split=args["split"], out_dir=args["out_dir"], features=1, cfg=cfg,
                    seed=int(args.get("seed", 3)), dataset="toy", device="cpu", num_workers=0, threads=1,
                    cache_mb=0)


def _density(a):
    from rhosym.density import run_density_shard

    return run_density_shard(a["ingest"], a["out"], a["cfg"])


def _samples(a):
    from rhosym.sampling import write_sample_store

    return write_sample_store(a["source"], a["out"], a["method"], a["cfg"], seed=int(a["seed"]))


def _xrd(a):
    from rhosym.xrd import run_xrd_shard

    return run_xrd_shard(a["ingest"], a["out"], a["cfg"])


def _graphs(a):
    from rhosym.graphs import run_graphs_shard

    return run_graphs_shard(a["ingest"], a["out"], a["kind"], a["cfg"])


def _predict(a):
    from rhosym.infer import predict_split
    from tests.test_train_fixtures import standin_registry

    df = predict_split(a["checkpoint"], a["stores"], a["manifest"], a["split"], split="test", out=a["out"],
                       device="cpu", registry=standin_registry())
    return {"rows": len(df)}


def _train(a):
    from rhosym.train import train

    return train(train_job(a))


STAGES = {"density": _density, "samples": _samples, "xrd": _xrd, "graphs": _graphs, "predict": _predict,
          "train": _train}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    install_pause(spec["pause"], spec["marker"])
    STAGES[spec["stage"]](spec["args"])
    print("fault_child: the stage finished without reaching its pause point", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))
