# The paper's baselines: random forests on LBP-TOP of the face sequence, trained on all
# training clips (Baseline-1) or on 100 per class (Baseline-2); plus an extra row, a
# random forest on mean-pooled ConvNet features. One job per method x fold fits every seed's
# forest (the stores read once), with outputs per seed.


rule lbptop_features:
    input:
        face_store=f"{RESULTS}/faces/shard_{{shard}}.h5",
    output:
        store=f"{RESULTS}/lbptop/shard_{{shard}}.h5",
    log:
        f"{RESULTS}/logs/lbptop_features/shard_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lbptop_features/shard_{{shard}}.tsv"
    conda:
        "../../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cpu_kernels=config["cpu_kernels"],
        lbptop=config["baselines"]["lbptop"],
        faces=get_face_params,
    script:
        "../scripts/lbptop_features.py"


rule random_forest_baseline:
    input:
        clips=f"{RESULTS}/data/clips.csv",
        folds=f"{RESULTS}/data/folds.csv",
        features=get_baseline_features,
        convnets=get_baseline_convnet,
    output:
        predictions=per_seed(
            f"{RESULTS}/predictions/{{method}}/fold_{{fold}}/seed_{{seed}}.parquet"
        ),
        training_sets=per_seed(
            f"{RESULTS}/baselines/{{method}}/fold_{{fold}}/seed_{{seed}}_training_set.tsv"
        ),
    log:
        f"{RESULTS}/logs/random_forest_baseline/{{method}}_fold_{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/random_forest_baseline/{{method}}_fold_{{fold}}.tsv"
    wildcard_constraints:
        method="baseline1|baseline2|rf_convnet_mean",
    conda:
        "../../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60 * len(SEEDS),
    params:
        cpu_kernels=config["cpu_kernels"],
        seeds=SEEDS,
        convnet_seeds=get_baseline_convnet_seeds,
        classes=config["dataset"]["classes"],
        random_forest=config["baselines"]["random_forest"],
        per_class=get_baseline2_per_class,
        lbptop=get_baseline_lbptop,
        layer=get_baseline_layer,
    script:
        "../scripts/random_forest_baseline.py"
