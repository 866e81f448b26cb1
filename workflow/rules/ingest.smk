# Stage 'ingest': input units -> per-shard rows with structures -> one manifest per data set.
# See docs/formats.md ("Units, shards and the manifest").


rule ingest_shard:
    output:
        f"{RESULTS}/{{ds}}/ingest/shard-{{shard}}.parquet",
    params:
        ds=lambda w: config["datasets"][w.ds],
        shard_size=config["shard_size"],
        labels=config["labels"],
        ingest=config["ingest"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/ingest_shard/{{ds}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ingest_shard/{{ds}}/{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=lambda w: 2000 + 2 * int(config["shard_size"]),
        runtime=120,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/ingest_shard.py"


localrules:
    manifest,


rule manifest:
    input:
        lambda w: per_shard(f"{RESULTS}/{{ds}}/ingest/shard-{{shard}}.parquet", w.ds),
    output:
        manifest=f"{RESULTS}/{{ds}}/manifest.parquet",
        report=f"{RESULTS}/{{ds}}/ingest_report.csv",
    log:
        f"{RESULTS}/logs/manifest/{{ds}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/manifest/{{ds}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/manifest.py"


# Only when asked for: `snakemake download_mp_<ds>` or the path {RESULTS}/downloads/<ds>.done.
# Needs MP_API_KEY in the environment and the optional extra rhosym[mp].
rule download_mp:
    output:
        touch(f"{RESULTS}/downloads/{{ds}}.done"),
    params:
        ds=lambda w: config["datasets"][w.ds],
    log:
        f"{RESULTS}/logs/download_mp/{{ds}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/download_mp/{{ds}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=1440,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/download_mp.py"


for _ds in DATASETS:
    if config["datasets"][_ds]["kind"] == "mp_chgcar":

        rule:
            name:
                f"download_mp_{_ds}"
            input:
                f"{RESULTS}/downloads/{_ds}.done",
            localrule: True


ALL_TARGETS.extend(expand(f"{RESULTS}/{{ds}}/manifest.parquet", ds=DATASETS))
