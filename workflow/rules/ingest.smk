# Stage 'ingest': input units -> per-shard rows with structures -> one manifest per data set.
# Each shard declares the raw files it reads (editing one CIF reruns its shard only); units go to shards
# by a hash of their key (rhosym.shards), so adding files leaves the other shards as they are.


rule ingest_shard:
    input:
        get_ingest_inputs,
    output:
        wild(L.INGEST_SHARD),
    params:
        ds=lambda w: S.datasets[w.ds].model_dump(exclude_none=True),
        units=lambda w: rw.ingest_units(S, w.ds, w.shard),
        labels=S.labels.model_dump(),
        ingest=S.ingest.model_dump(),
        seed=S.seed,
    log:
        log_of("ingest_shard", "{ds}", "{shard}"),
    benchmark:
        bench_of("ingest_shard", "{ds}", "{shard}")
    threads: 1
    resources:
        mem_mb=lambda w: 2000 + 2 * S.shard_size,
        runtime=120,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/ingest_shard.py"


localrules:
    manifest,


rule manifest:
    input:
        get_ingest_shards,
    output:
        manifest=wild(L.MANIFEST),
        report=wild(L.INGEST_REPORT),
    log:
        log_of("manifest", "{ds}"),
    benchmark:
        bench_of("manifest", "{ds}")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/manifest.py"


# Only when asked for: `snakemake download_mp_<ds>` or the path {resources}/mp/<ds>.done. Downloads land
# under the resources folder (resources/mp/<ds>/ unless the data set names a path), never under results/.
# Needs MP_API_KEY in the environment and the optional extra rhosym[mp].
rule download_mp:
    output:
        touch(L.pattern(S.resources, L.DOWNLOAD_DONE)),
    params:
        ds=lambda w: S.datasets[w.ds].model_dump(exclude_none=True),
    log:
        log_of("download_mp", "{ds}"),
    benchmark:
        bench_of("download_mp", "{ds}")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=1440,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/download_mp.py"


for _ds in DATASETS:
    if S.datasets[_ds].kind == "mp_chgcar":

        rule:
            name:
                f"download_mp_{_ds}"
            input:
                L.path(S.resources, L.DOWNLOAD_DONE, ds=_ds),
            localrule: True


ALL_TARGETS.extend(path(L.MANIFEST, ds=ds) for ds in DATASETS)
