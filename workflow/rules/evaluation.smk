# Evaluation: ACC (eq. 5) and the paper's MAP (eq. 6, per-class recall averaged) with
# true macro precision and macro F1, per method x split x seed over every clip of the
# split; paired bootstrap differences between methods; the Table 1 layout with the
# paper's CHEAVD figures beside ours; confusion matrices and attention plots.


rule evaluate:
    input:
        predictions=all_predictions(),
        clips=f"{RESULTS}/data/clips.csv",
        folds=f"{RESULTS}/data/folds.csv",
        face_qc=f"{RESULTS}/qc/faces.parquet",
        training_sets=expand(
            f"{RESULTS}/baselines/{{method}}/fold_{{fold}}/seed_{{seed}}_training_set.tsv",
            method=BASELINES,
            fold=FOLDS,
            seed=SEEDS,
        ),
        pretrain_histories=expand(
            f"{RESULTS}/convnet/seed_{{convnet_seed}}/pretrain_history.csv",
            convnet_seed=CONVNET_SEEDS,
        ),
        finetune_histories=expand(
            f"{RESULTS}/convnet/seed_{{convnet_seed}}/fold_{{fold}}/finetune_history.csv",
            convnet_seed=CONVNET_SEEDS,
            fold=FOLDS,
        ),
    output:
        metrics=f"{RESULTS}/metrics.parquet",
        table=report(
            f"{RESULTS}/table.md",
            caption="../report/table.rst",
            category="Results",
        ),
        confusion=report(
            expand(f"{RESULTS}/plots/confusion_{{method}}.png", method=METHODS),
            caption="../report/confusion.rst",
            category="Results",
        ),
    log:
        f"{RESULTS}/logs/evaluate.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate.tsv"
    conda:
        "../../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cpu_kernels=config["cpu_kernels"],
        classes=config["dataset"]["classes"],
        methods=METHODS,
        baseline2_per_class=config["baselines"]["baseline2_per_class"],
        convnet_seeds=CONVNET_SEEDS,
        evaluation=get_evaluation_params,
        describe=get_run_description,
    script:
        "../scripts/evaluate.py"


rule plot_attention:
    input:
        attention=expand(
            f"{RESULTS}/temporal/attention_lstm/fold_0/seed_{{seed}}/attention.parquet",
            seed=SEEDS[0],
        ),
        face_stores=face_stores(),
    output:
        plot=report(
            f"{RESULTS}/plots/attention_examples.png",
            caption="../report/attention.rst",
            category="Results",
        ),
    log:
        f"{RESULTS}/logs/plot_attention.log",
    benchmark:
        f"{RESULTS}/benchmarks/plot_attention.tsv"
    conda:
        "../../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cpu_kernels=config["cpu_kernels"],
        faces=get_face_params,
        classes=config["dataset"]["classes"],
        per_class=1,
    script:
        "../scripts/plot_attention.py"
