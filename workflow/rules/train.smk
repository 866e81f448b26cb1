# Stage 'train': one training job per experiment (data set, model, task, variant = input, features,
# points, split, seed[, pretrained]) and its test-split predictions (also zero-shot on other data sets).
# A lattice-conditioned experiment (variant -lat) also reads the data set's ingest shards (its cells).
# Logic in rhosym.train / rhosym.infer. Only result-affecting settings go to params
# (rhosym.settings.Config.train_params, typed): job resources (threads, memory, device, workers, cache,
# resume) go through `resources:` only and never trigger a rerun.
# last.pt (for resuming a killed job) is kept beside checkpoint.pt but not declared: Snakemake would
# delete it with the outputs of a failed job.
# train.processes N > 1 (result-affecting, in params): N data-parallel ranks under torchrun inside the job
# (rhosym.distributed); a GPU job (train.gpus > 0, device cuda or auto) then asks for one GPU per rank.

from rhosym.distributed import gpu_request


rule train_model:
    input:
        manifest=wild(L.MANIFEST),
        split=get_split,
        stores=get_stores,
        lattice=get_lattice_stores,
        pretrained=get_pretrained,
    output:
        checkpoint=wild(L.CHECKPOINT),
        history=wild(L.HISTORY),
    params:
        train=lambda w: S.train_params(w.model, w.task, L.parse_variant(w.variant)["robust"],
                                       L.parse_variant(w.variant)["augment"],
                                       L.parse_variant(w.variant)["lattice"]).model_dump(),
        provenance=lambda w: {
            "kind": S.datasets[w.ds].kind,
            "cell": S.datasets[w.ds].resolved_cell,
            "labels": S.labels.model_dump(),
            "ingest": S.ingest.model_dump(),
        },
    log:
        log_of("train_model", "{ds}", "{model}", "{task}", "{variant}"),
    benchmark:
        bench_of("train_model", "{ds}", "{model}", "{task}", "{variant}")
    threads: lambda w: S.train_resource(w.model, "threads")
    resources:
        mem_mb=lambda w: S.train_resource(w.model, "mem_mb"),
        runtime=lambda w: S.train_resource(w.model, "runtime"),
        gpu=lambda w: gpu_request(
            S.train_resource(w.model, "gpus"),
            S.train_params(w.model, w.task, L.parse_variant(w.variant)["robust"]).processes,
            S.train_resource(w.model, "device"),
        ),
        device=lambda w: S.train_resource(w.model, "device"),
        num_workers=lambda w: S.train_resource(w.model, "num_workers"),
        cache_mb=lambda w: S.train_resource(w.model, "cache_mb"),
        resume=int(S.train.resume),
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/train_model.py"


rule predict_test:
    input:
        checkpoint=get_checkpoint,
        manifest=wild(L.MANIFEST),
        split=get_split,
        stores=get_stores,
        lattice=get_lattice_stores,
    output:
        wild(L.PREDICTION),
    params:
        top_k=S.train.top_k,
        evaluate=S.evaluate.model_dump(include={"origin_shift", "rotation"}),
    log:
        log_of("predict_test", "{ds}", "{model}", "{task}", "{variant}"),
    benchmark:
        bench_of("predict_test", "{ds}", "{model}", "{task}", "{variant}")
    threads: 1
    resources:
        mem_mb=lambda w: S.train_resource(w.model, "mem_mb"),
        device=lambda w: S.train_resource(w.model, "device"),
        runtime=60,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/predict_test.py"


ALL_TARGETS.extend(path(L.CHECKPOINT, ds=e.dataset, model=e.model, task=e.task, variant=e.variant)
                   for e in EXPERIMENTS)
ALL_TARGETS.extend(f for ds in DATASETS for f in prediction_files(ds))
