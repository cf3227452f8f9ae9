# The paper's ConvNet: pretrained on FER2013-format images, fine-tuned on the video
# faces with the convolutional layers frozen; its last FC output is the per-frame
# feature written to one HDF5 feature store per fold x shard. Each ConvNet seed (every
# evaluation seed, or one shared seed: convnet.per_seed) has a chain of its own: one
# pretraining, one fine-tuning per fold, one feature job per shard that reads its faces
# once and applies every fold's ConvNet. Both trainings checkpoint every
# epoch into a folder given as a param (not an output, so Snakemake keeps it when a job
# is killed): rerunning a killed job resumes after its last finished epoch.


rule pretrain_convnet:
    input:
        fer=f"{RESULTS}/data/fer2013.h5",
    output:
        model=f"{RESULTS}/convnet/seed_{{convnet_seed}}/pretrained.pt",
        history=f"{RESULTS}/convnet/seed_{{convnet_seed}}/pretrain_history.csv",
        curve=report(
            f"{RESULTS}/plots/convnet_pretrain_curve_seed_{{convnet_seed}}.png",
            caption="../report/training_curve.rst",
            category="Training",
        ),
    log:
        f"{RESULTS}/logs/pretrain_convnet/seed_{{convnet_seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretrain_convnet/seed_{{convnet_seed}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["training_threads"]
    resources:
        mem_mb=8000,
        runtime=240,
        gres=get_gpu_request,
    params:
        cpu_kernels=config["cpu_kernels"],
        architecture=config["convnet"]["architecture"],
        pretrain=config["convnet"]["pretrain"],
        device=config["device"],
        checkpoints=get_pretrain_checkpoints,
    script:
        "../scripts/pretrain_convnet.py"


rule finetune_convnet:
    input:
        pretrained=f"{RESULTS}/convnet/seed_{{convnet_seed}}/pretrained.pt",
        clips=f"{RESULTS}/data/clips.csv",
        folds=f"{RESULTS}/data/folds.csv",
        face_stores=face_stores(),
    output:
        model=f"{RESULTS}/convnet/seed_{{convnet_seed}}/fold_{{fold}}/finetuned.pt",
        history=f"{RESULTS}/convnet/seed_{{convnet_seed}}/fold_{{fold}}/finetune_history.csv",
        curve=report(
            f"{RESULTS}/plots/convnet_finetune_curve_seed_{{convnet_seed}}_fold_{{fold}}.png",
            caption="../report/training_curve.rst",
            category="Training",
        ),
    log:
        f"{RESULTS}/logs/finetune_convnet/seed_{{convnet_seed}}_fold_{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune_convnet/seed_{{convnet_seed}}_fold_{{fold}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: get_finetune_threads
    resources:
        mem_mb=8000,
        runtime=120,
        gres=get_gpu_request,
    params:
        cpu_kernels=config["cpu_kernels"],
        finetune=config["convnet"]["finetune"],
        faces=get_face_params,
        classes=config["dataset"]["classes"],
        fer_to_target=config["pretrain_data"]["fer_to_target"],
        video_data=get_video_data_params,
        device=config["device"],
        checkpoints=get_finetune_checkpoints,
    script:
        "../scripts/finetune_convnet.py"


rule extract_features:
    input:
        models=expand(
            f"{RESULTS}/convnet/seed_{{convnet_seed}}/fold_{{fold}}/finetuned.pt",
            fold=FOLDS,
            allow_missing=True,
        ),
        face_store=f"{RESULTS}/faces/shard_{{shard}}.h5",
    output:
        stores=expand(
            f"{RESULTS}/features/{{layer}}/seed_{{convnet_seed}}/fold_{{fold}}/shard_{{shard}}.h5",
            fold=FOLDS,
            allow_missing=True,
        ),
    log:
        f"{RESULTS}/logs/extract_features/{{layer}}_seed_{{convnet_seed}}_shard_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_features/{{layer}}_seed_{{convnet_seed}}_shard_{{shard}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60 * len(FOLDS),
        gres=get_gpu_request,
    params:
        cpu_kernels=config["cpu_kernels"],
        fold_ids=FOLDS,
        batch_size=config["features"]["batch_size"],
        faces=get_face_params,
        device=config["device"],
    script:
        "../scripts/extract_features.py"
