# The paper's temporal models over the per-frame ConvNet features: the peephole LSTM
# (eq. 1) and the attention LSTM (eqs. 2-4). One job per fold trains both models for every
# seed (they share every parameter, so no caching is lost): one process, the stores read
# once, outputs per model and seed. Each seed trains on the features of its own ConvNet
# (or of the shared one: convnet.per_seed).


rule train_temporal:
    input:
        clips=f"{RESULTS}/data/clips.csv",
        folds=f"{RESULTS}/data/folds.csv",
        features=feature_stores,
        convnets=fold_convnets,
    output:
        models=per_model_and_seed(
            f"{RESULTS}/temporal/{{temporal_model}}/fold_{{fold}}/seed_{{seed}}/model.pt"
        ),
        histories=per_model_and_seed(
            f"{RESULTS}/temporal/{{temporal_model}}/fold_{{fold}}/seed_{{seed}}/history.csv"
        ),
        attentions=per_model_and_seed(
            f"{RESULTS}/temporal/{{temporal_model}}/fold_{{fold}}/seed_{{seed}}/attention.parquet"
        ),
        predictions=per_model_and_seed(
            f"{RESULTS}/predictions/{{temporal_model}}/fold_{{fold}}/seed_{{seed}}.parquet"
        ),
    log:
        f"{RESULTS}/logs/train_temporal/fold_{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_temporal/fold_{{fold}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240 * len(TEMPORAL_MODELS) * len(SEEDS),
        gres=get_gpu_request,
    params:
        cpu_kernels=config["cpu_kernels"],
        temporal_models=TEMPORAL_MODELS,
        seeds=SEEDS,
        convnet_seeds=seeds_convnets(),
        temporal=config["temporal"],
        classes=config["dataset"]["classes"],
        layer=LAYER,
        device=config["device"],
    script:
        "../scripts/train_temporal.py"
