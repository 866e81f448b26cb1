# One training job: its typed settings are parsed once here and the job is written beside its checkpoint
# (job.json: `rhosym train job.json` reruns it outside Snakemake); resources never change the result.
# train.processes > 1: the job runs as that many data-parallel ranks under torchrun (rhosym.distributed),
# each rank running `rhosym train job.json`; their output goes to the job's log.
from pathlib import Path

from rhosym import layout
from rhosym.distributed import launch
from rhosym.logs import job_logging
from rhosym.settings import TrainParams
from rhosym.train import TrainJob, train

with job_logging(snakemake.log[0] if snakemake.log else None):
    w, r = snakemake.wildcards, snakemake.resources
    v = layout.parse_variant(w.variant)
    out_dir = Path(snakemake.output.checkpoint).parent
    job = TrainJob(
        model=w.model, task=w.task, input=v["input"], features=v["features"], points=v["points"],
        stores=list(snakemake.input.stores), manifest=snakemake.input.manifest, split=snakemake.input.split,
        out_dir=str(out_dir), cfg=TrainParams.model_validate(snakemake.params.train), seed=v["seed"], dataset=w.ds,
        split_rule=v["split"], pretrained=(list(snakemake.input.pretrained) or [None])[0],
        pretrained_from=v["pretrained"], provenance=dict(snakemake.params.provenance), device=str(r.device),
        num_workers=int(r.num_workers), threads=int(snakemake.threads), resume=bool(r.resume),
        cache_mb=int(r.cache_mb), fraction=float(v["fraction"]), lattice_stores=list(snakemake.input.lattice))
    out_dir.mkdir(parents=True, exist_ok=True)
    job.to_json(out_dir / "job.json")
    if job.cfg.processes > 1:
        rc = launch(str(out_dir / "job.json"), job.cfg.processes, log_file=snakemake.log[0] if snakemake.log else None)
        if rc:
            raise RuntimeError(f"data-parallel training with {job.cfg.processes} processes failed (torchrun exit "
                               f"status {rc}); the ranks' messages are in this log")
    else:
        train(job)
