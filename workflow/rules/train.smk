# Stage 'train': one training job per experiment (data set, model, task, input, features), and its
# test-split predictions. Logic in rhosym.train / rhosym.infer; inputs per model kind:
#   density models: samples/{input}/shard-*.zarr; xrd_fcn: xrd/shard-*.zarr; cgcnn/cogn: graphs/{model}/.
# last.pt (for resuming a killed job) is kept beside checkpoint.pt but not declared: Snakemake would
# delete it with the outputs of a failed job.

from rhosym import train as rtrain

TRAIN = config["train"]


wildcard_constraints:
    model="sparse_cnn|pointnet|xrd_fcn|cgcnn|cogn",
    task="crystal_system|extinction_group|space_group|band_gap|formation_energy",
    input="random|grid|xrd|graph",
    features=r"\d+",


rule train_model:
    input:
        manifest=f"{RESULTS}/{{ds}}/manifest.parquet",
        split=f"{RESULTS}/{{ds}}/split.parquet",
        stores=lambda w: per_shard(f"{RESULTS}/{w.ds}/{rtrain.store_pattern(w.model, w.input)}", w.ds),
    output:
        checkpoint=f"{RESULTS}/{{ds}}/models/{{model}}/{{task}}/{{input}}-f{{features}}/checkpoint.pt",
        history=f"{RESULTS}/{{ds}}/models/{{model}}/{{task}}/{{input}}-f{{features}}/history.csv",
    params:
        train=TRAIN,
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/train_model/{{ds}}/{{model}}/{{task}}/{{input}}-f{{features}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model/{{ds}}/{{model}}/{{task}}/{{input}}-f{{features}}.tsv"
    threads: lambda w: rtrain.job_setting(TRAIN, w.model, "threads")
    resources:
        mem_mb=lambda w: rtrain.job_setting(TRAIN, w.model, "mem_mb"),
        runtime=lambda w: rtrain.job_setting(TRAIN, w.model, "runtime"),
        gpu=lambda w: rtrain.job_setting(TRAIN, w.model, "gpus"),
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/train_model.py"


rule predict_test:
    input:
        checkpoint=rules.train_model.output.checkpoint,
        manifest=f"{RESULTS}/{{ds}}/manifest.parquet",
        split=f"{RESULTS}/{{ds}}/split.parquet",
        stores=lambda w: per_shard(f"{RESULTS}/{w.ds}/{rtrain.store_pattern(w.model, w.input)}", w.ds),
    output:
        f"{RESULTS}/{{ds}}/predictions/{{model}}/{{task}}/{{input}}-f{{features}}.parquet",
    params:
        top_k=TRAIN["top_k"],
        device=TRAIN["device"],
    log:
        f"{RESULTS}/logs/predict_test/{{ds}}/{{model}}/{{task}}/{{input}}-f{{features}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict_test/{{ds}}/{{model}}/{{task}}/{{input}}-f{{features}}.tsv"
    threads: 1
    resources:
        mem_mb=lambda w: rtrain.job_setting(TRAIN, w.model, "mem_mb"),
        runtime=60,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/predict_test.py"


ALL_TARGETS.extend(f"{RESULTS}/{e.dataset}/models/{e.path}/checkpoint.pt" for e in EXPERIMENTS)
ALL_TARGETS.extend(f"{RESULTS}/{e.dataset}/predictions/{e.path}.parquet" for e in EXPERIMENTS)
