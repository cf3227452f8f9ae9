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
METHODS = BASELINES + TEMPORAL_MODELS


wildcard_constraints:
    shard=r"\d+",
    seed=r"\d+",
    layer=r"logits|penultimate",


def get_final_output():
    return [
        f"{RESULTS}/table.md",
        f"{RESULTS}/metrics.parquet",
        f"{RESULTS}/qc/faces.parquet",
        *expand(f"{RESULTS}/plots/confusion_{{method}}.png", method=METHODS),
        f"{RESULTS}/plots/attention_examples.png",
    ]


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
    return config["faces"]


def get_convnet_params(wildcards):
    return config["convnet"]


def get_temporal_params(wildcards):
    return config["temporal"]


def face_stores():
    return expand(f"{RESULTS}/faces/shard_{{shard}}.h5", shard=SHARDS)


def feature_stores(layer=LAYER):
    return expand(f"{RESULTS}/features/{layer}/shard_{{shard}}.h5", shard=SHARDS)


def lbptop_stores():
    return expand(f"{RESULTS}/lbptop/shard_{{shard}}.h5", shard=SHARDS)


def get_baseline_features(wildcards):
    """LBP-TOP for the paper's baselines, ConvNet features for the extra row."""
    if wildcards.method == "rf_convnet_mean":
        return feature_stores()
    return lbptop_stores()


def all_predictions():
    return expand(
        f"{RESULTS}/predictions/{{method}}/seed_{{seed}}.parquet",
        method=METHODS,
        seed=SEEDS,
    )
