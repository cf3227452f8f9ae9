# The paper's temporal models over the per-frame ConvNet features: the peephole LSTM
# (eq. 1) and the attention LSTM (eqs. 2-4), one training run per seed.


rule train_temporal:
    input:
        clips=f"{RESULTS}/data/clips.csv",
        folds=f"{RESULTS}/data/folds.csv",
        features=feature_stores(),
        convnet=f"{RESULTS}/convnet/fold_{{fold}}/finetuned.pt",
    output:
        model=f"{RESULTS}/temporal/{{temporal_model}}/fold_{{fold}}/seed_{{seed}}/model.pt",
        history=f"{RESULTS}/temporal/{{temporal_model}}/fold_{{fold}}/seed_{{seed}}/history.csv",
        attention=f"{RESULTS}/temporal/{{temporal_model}}/fold_{{fold}}/seed_{{seed}}/attention.parquet",
        predictions=f"{RESULTS}/predictions/{{temporal_model}}/fold_{{fold}}/seed_{{seed}}.parquet",
    log:
        f"{RESULTS}/logs/train_temporal/{{temporal_model}}_fold_{{fold}}_seed_{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_temporal/{{temporal_model}}_fold_{{fold}}_seed_{{seed}}.tsv"
    wildcard_constraints:
        temporal_model="lstm|attention_lstm",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
        gres=get_gpu_request,
    params:
        temporal=config["temporal"],
        classes=config["dataset"]["classes"],
        layer=LAYER,
        device=config["device"],
    script:
        "../scripts/train_temporal.py"
