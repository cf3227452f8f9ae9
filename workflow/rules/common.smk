# The only place with logic about the run: config validation, shard and seed lists,
# and the small input/param helpers the rules call. Nothing here imports torch, so
# that `snakemake -n` stays fast.

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml", set_default=True)


RESULTS = "results"
SHARDS = list(range(config["faces"]["n_shards"]))
SEEDS = config["evaluation"]["seeds"]
LAYER = config["features"]["layer"]
BASELINES = ["baseline1", "baseline2"] + (
    ["rf_convnet_mean"] if config["baselines"]["convnet_mean_row"] else []
)
TEMPORAL_MODELS = ["lstm", "attention_lstm"]


def evaluation_protocol():
    """fixed (the manifest's split) or kfold; auto = kfold when a manifest has no split column."""
    protocol = config["evaluation"]["protocol"]
    if protocol != "auto":
        return protocol
    if config["dataset"]["adapter"] == "manifest":
        with open(config["dataset"]["manifest"]["path"]) as fh:
            header = [c.strip() for c in fh.readline().split(",")]
        return "fixed" if "split" in header else "kfold"
    return "fixed"


PROTOCOL = evaluation_protocol()
FOLDS = list(range(config["evaluation"]["folds"])) if PROTOCOL == "kfold" else [0]
METHODS = BASELINES + TEMPORAL_MODELS


wildcard_constraints:
    shard=r"\d+",
    seed=r"\d+",
    fold=r"\d+",
    layer=r"logits|penultimate",


def get_final_output():
    return [
        f"{RESULTS}/table.md",
        f"{RESULTS}/metrics.parquet",
        f"{RESULTS}/qc/faces.parquet",
        *expand(f"{RESULTS}/plots/confusion_{{method}}.png", method=METHODS),
        f"{RESULTS}/plots/attention_examples.png",
    ]


def get_gpu_request(wildcards):
    """The SLURM GRES of the GPU rules (e.g. "gpu:1"): a GPU only where config
    cluster.gpu_gres asks for one; empty = none (local runs ignore it)."""
    return config["cluster"]["gpu_gres"]


def get_dataset_input(wildcards):
    """The file the clip adapter reads: the rendered or the user's manifest."""
    adapter = config["dataset"]["adapter"]
    if adapter == "synthetic":
        return f"{RESULTS}/corpus/manifest.csv"
    if adapter == "manifest":
        return config["dataset"]["manifest"]["path"]
    return []  # cheavd: a folder tree, read by the adapter


def get_fer_input(wildcards):
    if config["pretrain_data"]["adapter"] == "synthetic":
        return f"{RESULTS}/corpus/fer2013.csv"
    if config["pretrain_data"]["adapter"] == "fer2013_csv":
        return config["pretrain_data"]["path"]
    return []


def get_dataset_params(wildcards):
    return {k: v for k, v in config["dataset"].items() if k != "synthetic"}


def get_face_params(wildcards):
    """The face section without max_excluded_fraction (face_qc's alone): changing it reruns nothing else."""
    return {k: v for k, v in config["faces"].items() if k != "max_excluded_fraction"}


def get_convnet_params(wildcards):
    return config["convnet"]


def get_temporal_params(wildcards):
    return config["temporal"]


def get_evaluation_params(wildcards):
    """How excluded clips are scored and how differences are bootstrapped."""
    evaluation = config["evaluation"]
    return {k: evaluation[k] for k in ("excluded_clips", "bootstrap")}


def get_run_description(wildcards):
    """What the table's labels are derived from: protocol, ConvNet freezing, feature layer."""
    return {
        "protocol": PROTOCOL,
        "folds": len(FOLDS),
        "feature_layer": LAYER,
        "unfreeze_last_conv_blocks": config["convnet"]["finetune"][
            "unfreeze_last_conv_blocks"
        ],
    }


def get_finetune_checkpoints(wildcards):
    """Per-epoch checkpoints of one fold's fine-tuning (not an output: kept only until done)."""
    return f"{RESULTS}/convnet/checkpoints/finetune_fold_{wildcards.fold}"


def face_stores():
    return expand(f"{RESULTS}/faces/shard_{{shard}}.h5", shard=SHARDS)


def feature_stores(wildcards=None, layer=LAYER):
    """The feature stores of one fold (the fold of the requesting job)."""
    fold = wildcards.fold if wildcards is not None else "{{fold}}"
    return expand(
        f"{RESULTS}/features/{layer}/fold_{fold}/shard_{{shard}}.h5", shard=SHARDS
    )


def lbptop_stores():
    return expand(f"{RESULTS}/lbptop/shard_{{shard}}.h5", shard=SHARDS)


def get_baseline_features(wildcards):
    """LBP-TOP for the paper's baselines, ConvNet features for the extra row."""
    if wildcards.method == "rf_convnet_mean":
        return feature_stores(wildcards)
    return lbptop_stores()


def all_predictions():
    return expand(
        f"{RESULTS}/predictions/{{method}}/fold_{{fold}}/seed_{{seed}}.parquet",
        method=METHODS,
        fold=FOLDS,
        seed=SEEDS,
    )
