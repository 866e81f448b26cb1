# Stage 'robustness': each trained density model (and the XRD FCN under its powder analogues, the
# lattice control under lattice noise) evaluated on the common test set under perturbations of growing
# strength (rhosym.perturb, rhosym.robustness): noise, resolution loss, missing wedge, thermal smearing.
# Perturbed inputs are rebuilt from the ingest shards (densities recomputed and re-sampled), so the rule
# depends on the settings that made the training inputs.

localrules:
    robustness,


rule robust_eval:
    input:
        checkpoint=get_checkpoint,
        manifest=wild(L.MANIFEST),
        split=get_split,
        ingest=get_ingest_shards,
        stores=get_stores,
        common=wild(L.COMMON_IDS),
    output:
        wild(L.ROBUST, perturbation="all"),
    params:
        robustness=S.robustness.model_dump(include={"perturbations", "levels", "max_structures"}),
        sample=S.sample.model_dump(exclude={"methods"}),
        density=S.density.model_dump(),
        xrd=S.xrd.model_dump(),
        seed=S.seed,
    log:
        log_of("robust_eval", "{ds}", "{model}", "{task}", "{variant}"),
    benchmark:
        bench_of("robust_eval", "{ds}", "{model}", "{task}", "{variant}")
    threads: 1
    resources:
        mem_mb=lambda w: S.train_resource(w.model, "mem_mb"),
        device=lambda w: S.train_resource(w.model, "device"),
        runtime=120,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/robust_eval.py"


rule robustness:
    input:
        get_robust_outputs,
    output:
        wild(L.ROBUSTNESS),
    params:
        evaluate=S.evaluate.model_dump(include={"bootstrap", "confidence"}),
    log:
        log_of("robustness", "{ds}"),
    benchmark:
        bench_of("robustness", "{ds}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/robustness.py"
