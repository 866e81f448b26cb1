"""``rhosym train JOB.json``: run one training job outside Snakemake.

Every ``train_model`` job writes its typed job (:class:`rhosym.train.TrainJob`: model, task, stores,
manifest, split, the resolved training settings and the job resources) as ``job.json`` beside its
checkpoint. This command runs such a file: to rerun or resume one experiment by hand, on another machine,
or under a launcher. Resources may be overridden on the command line; settings that change the result
may not (edit the config and let Snakemake rerun instead).

A job with ``train.processes`` N > 1 (data-parallel, :mod:`rhosym.distributed`) started outside a
launcher starts ``torchrun --standalone --nproc_per_node N`` on this same command and returns its exit
status (non-zero when any rank failed); under ``torchrun`` (``WORLD_SIZE`` set) each rank trains and
rank 0 prints the summary.
"""

from __future__ import annotations

HELP = "Run one training job from its job file (job.json, written beside every checkpoint)."


def add_arguments(parser) -> None:
    parser.add_argument("file", metavar="JOB.json", help="a job file written by the train_model rule")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override the job's device")
    parser.add_argument("--threads", type=int, help="override the job's torch threads")
    parser.add_argument("--num-workers", type=int, help="override the job's DataLoader workers")
    parser.add_argument("--no-resume", action="store_true", help="train from scratch even if last.pt exists")


def run(args) -> int:
    import json
    import os
    import sys

    from rhosym.commands._common import about, require_file
    from rhosym.logs import setup_logging
    from rhosym.train import TrainJob, train

    setup_logging()
    require_file(args.file)
    with about(args.file):
        job = TrainJob.from_json(args.file)
    for key, value in (("device", args.device), ("threads", args.threads), ("num_workers", args.num_workers)):
        if value is not None:
            setattr(job, key, value)
    if args.no_resume:
        job.resume = False
    processes = int(job.cfg.processes)
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        from rhosym.distributed import launch

        given = [f"--{k.replace('_', '-')}={v}" for k, v in (("device", args.device), ("threads", args.threads),
                                                            ("num_workers", args.num_workers)) if v is not None]
        rc = launch(args.file, processes, given + (["--no-resume"] if args.no_resume else []))
        if rc:
            print(f"rhosym train: {args.file}: data-parallel training with {processes} processes failed (torchrun "
                  f"exit status {rc}; the ranks' messages are above)", file=sys.stderr)
            return 1
        return 0
    summary = train(job)
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(summary))
    return 0
