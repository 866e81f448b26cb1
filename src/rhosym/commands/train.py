"""``rhosym train JOB.json``: run one training job outside Snakemake.

Every ``train_model`` job writes its typed job (:class:`rhosym.train.TrainJob`: model, task, stores,
manifest, split, the resolved training settings and the job resources) as ``job.json`` beside its
checkpoint. This command runs such a file: to rerun or resume one experiment by hand, on another machine,
or under a launcher. Resources may be overridden on the command line; settings that change the result
may not (edit the config and let Snakemake rerun instead).
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
    summary = train(job)
    print(json.dumps(summary))
    return 0
