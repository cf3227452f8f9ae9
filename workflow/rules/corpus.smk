# Data: the embedded synthetic demo corpus, and the adapters that turn any corpus into
# one clip table (results/data/clips.csv) and one FER image set.


rule render_synthetic_corpus:
    output:
        manifest=f"{RESULTS}/corpus/manifest.csv",
        fer=f"{RESULTS}/corpus/fer2013.csv",
        ground_truth=f"{RESULTS}/corpus/ground_truth.parquet",
        clips=directory(f"{RESULTS}/corpus/clips"),
    log:
        f"{RESULTS}/logs/render_synthetic_corpus.log",
    benchmark:
        f"{RESULTS}/benchmarks/render_synthetic_corpus.tsv"
    conda:
        "../../envs/corpus.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        cpu_kernels=config["cpu_kernels"],
        synthetic=config["dataset"]["synthetic"],
    script:
        "../scripts/render_synthetic_corpus.py"


rule prepare_clips:
    input:
        manifest=get_dataset_input,
    output:
        clips=f"{RESULTS}/data/clips.csv",
    log:
        f"{RESULTS}/logs/prepare_clips.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_clips.tsv"
    conda:
        "../../envs/corpus.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cpu_kernels=config["cpu_kernels"],
        dataset=get_dataset_params,
        shards=config["shards"],
    script:
        "../scripts/prepare_clips.py"


rule prepare_fer:
    input:
        source=get_fer_input,
    output:
        fer=f"{RESULTS}/data/fer2013.h5",
    log:
        f"{RESULTS}/logs/prepare_fer.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_fer.tsv"
    conda:
        "../../envs/corpus.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **get_fer_params(),
        cpu_kernels=config["cpu_kernels"],
    script:
        "../scripts/prepare_fer.py"


rule assign_folds:
    input:
        clips=f"{RESULTS}/data/clips.csv",
    output:
        folds=f"{RESULTS}/data/folds.csv",
    log:
        f"{RESULTS}/logs/assign_folds.log",
    benchmark:
        f"{RESULTS}/benchmarks/assign_folds.tsv"
    conda:
        "../../envs/corpus.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cpu_kernels=config["cpu_kernels"],
        protocol=PROTOCOL,
        n_folds=kfold_setting("folds"),
        fold_seed=kfold_setting("fold_seed"),
    script:
        "../scripts/assign_folds.py"
