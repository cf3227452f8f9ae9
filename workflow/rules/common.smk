# The only place with logic about the run: config validation, shard and seed lists,
# and the small input/param helpers the rules call. Nothing here imports torch, so
# that `snakemake -n` stays fast.

import functools
import os

from snakemake.utils import validate

from videmotion import cpu_kernels
from videmotion.config import face_params
from videmotion.labels import check_fer_to_target

validate(config, schema="../schemas/config.schema.yaml", set_default=True)
check_fer_to_target(
    config["pretrain_data"]["fer_to_target"], config["dataset"]["classes"]
)


# Every job inherits the CPU-kernel variables from this process (and a SLURM job, which
# reads this file again, from its own): set before any job imports torch, cv2 or numpy.
os.environ.update(cpu_kernels.environment(config["cpu_kernels"]))

RESULTS = "results"
SHARDS = list(range(config["shards"]))
SEEDS = config["evaluation"]["seeds"]
# The ConvNet each seed's features come from: its own (convnet.per_seed), or one shared.
PER_SEED_CONVNET = config["convnet"]["per_seed"]
CONVNET_SEEDS = SEEDS if PER_SEED_CONVNET else [config["convnet"]["seed"]]
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


def kfold_setting(key):
    """evaluation.folds / fold_seed under the k-fold protocol; None under the fixed split,
    which they do not affect (so changing them reruns nothing there)."""
    return config["evaluation"][key] if PROTOCOL == "kfold" else None


FOLDS = list(range(config["evaluation"]["folds"])) if PROTOCOL == "kfold" else [0]
METHODS = BASELINES + TEMPORAL_MODELS


wildcard_constraints:
    shard=r"\d+",
    seed=r"\d+",
    convnet_seed=r"\d+",
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


def required_path(key, value):
    """A path the config must give (an empty one would make Snakemake skip the rule)."""
    if not value:
        raise ValueError(f"config {key} is empty: set it to your data's path")
    return value


def get_dataset_input(wildcards):
    """The file the clip adapter reads: the rendered or the user's manifest."""
    adapter = config["dataset"]["adapter"]
    if adapter == "synthetic":
        return f"{RESULTS}/corpus/manifest.csv"
    if adapter == "manifest":
        return required_path(
            "dataset.manifest.path", config["dataset"]["manifest"]["path"]
        )
    return []  # cheavd: a folder tree, read by the adapter


def get_fer_input(wildcards):
    """The FER2013 source: the rendered or the user's CSV, or the image-folder root."""
    if config["pretrain_data"]["adapter"] == "synthetic":
        return f"{RESULTS}/corpus/fer2013.csv"
    return required_path("pretrain_data.path", config["pretrain_data"]["path"])


def get_fer_params():
    """What prepare_fer reads besides its input: the adapter and whether its images are
    synthetic (for the models' training-data record), the format, and for image folders the
    validation draw (the CSV has its own PublicTest rows)."""
    pretrain = config["pretrain_data"]
    source = {
        "adapter": pretrain["adapter"],
        "synthetic": pretrain["adapter"] == "synthetic" or pretrain["synthetic"],
    }
    if pretrain["adapter"] != "fer2013_folders":
        return {**source, "fer_format": "csv"}
    return {
        **source,
        "fer_format": "folders",
        "val_fraction": pretrain["val_fraction"],
        "val_seed": pretrain["val_seed"],
    }


def get_dataset_params(wildcards):
    """The dataset keys the configured clip adapter reads, and no other adapter's."""
    dataset = config["dataset"]
    keys = {
        "synthetic": ["classes", "label_map"],  # its manifest has a split column
        "manifest": [
            "classes",
            "label_map",
            "manifest",
            "split_fractions",
            "split_seed",
        ],
        "cheavd": ["classes", "label_map", "cheavd"],
    }[dataset["adapter"]]
    return {"adapter": dataset["adapter"], **{k: dataset[k] for k in keys}}


def get_video_data_params(wildcards):
    """The clip adapter and whether its clips are synthetic, for the models' training-data record."""
    return {
        "adapter": config["dataset"]["adapter"],
        "synthetic": config["dataset"]["adapter"] == "synthetic",
    }


def get_face_params(wildcards):
    """The face stage's parameters (the `faces` section without its QC gate): what face
    stores are built under and checked against by every stage that reads them."""
    return face_params(config["faces"])


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
        "convnet_per_seed": PER_SEED_CONVNET,
        "convnet_seed": None if PER_SEED_CONVNET else config["convnet"]["seed"],
    }


def convnet_seed_of(seed):
    """The seed of the ConvNet whose features the models of evaluation seed `seed` train on."""
    return seed if PER_SEED_CONVNET else config["convnet"]["seed"]


def convnet_file(name, convnet_seed, fold=None):
    """A file of one ConvNet seed's chain: its pretrained model or one fold's fine-tuned one."""
    folder = f"{RESULTS}/convnet/seed_{convnet_seed}"
    return f"{folder}/{name}" if fold is None else f"{folder}/fold_{fold}/{name}"


def get_finetune_threads(wildcards):
    """Fine-tuning on the frozen trunk's cached outputs (the default) is mostly the job's start
    and reading its frames: one thread, so that two folds run side by side. A fine-tuning that
    runs the conv layers at every step (unfrozen blocks, augmentation) gets training_threads.
    """
    finetune = config["convnet"]["finetune"]
    if finetune["unfreeze_last_conv_blocks"] == 0 and not finetune["augment"]:
        return 1
    return config["training_threads"]


def get_pretrain_checkpoints(wildcards):
    """Per-epoch checkpoints of one pretraining (not an output: kept only until done)."""
    return f"{RESULTS}/convnet/checkpoints/seed_{wildcards.convnet_seed}/pretrain"


def get_finetune_checkpoints(wildcards):
    """Per-epoch checkpoints of one fold's fine-tuning (not an output: kept only until done)."""
    return f"{RESULTS}/convnet/checkpoints/seed_{wildcards.convnet_seed}/finetune_fold_{wildcards.fold}"


def fold_convnets(wildcards):
    """The fine-tuned ConvNets of the requesting job's fold, one per ConvNet seed."""
    return [convnet_file("finetuned.pt", c, wildcards.fold) for c in CONVNET_SEEDS]


def seeds_convnets():
    """For each evaluation seed, the ConvNet seed its features come from (params of the jobs
    that read the feature stores of every ConvNet seed of a fold)."""
    return [convnet_seed_of(seed) for seed in SEEDS]


def per_seed(pattern):
    """`pattern` once per seed, its other wildcards kept: the outputs of a job that runs
    every seed of a fold in one process (interpreter, imports and stores paid once)."""
    return expand(pattern, seed=SEEDS, allow_missing=True)


def per_model_and_seed(pattern):
    """`pattern` once per temporal model and seed (model-major, the order the train_temporal
    stage runs them in), its other wildcards kept."""
    return expand(
        pattern, temporal_model=TEMPORAL_MODELS, seed=SEEDS, allow_missing=True
    )


def face_stores():
    return expand(f"{RESULTS}/faces/shard_{{shard}}.h5", shard=SHARDS)


def feature_stores(wildcards, layer=LAYER):
    """The feature stores of the requesting job's fold, every shard of each ConvNet seed in
    turn (seed-major, the order of CONVNET_SEEDS)."""
    return expand(
        f"{RESULTS}/features/{layer}/seed_{{convnet_seed}}/fold_{wildcards.fold}/shard_{{shard}}.h5",
        convnet_seed=CONVNET_SEEDS,
        shard=SHARDS,
    )


def lbptop_stores():
    return expand(f"{RESULTS}/lbptop/shard_{{shard}}.h5", shard=SHARDS)


def get_baseline_features(wildcards):
    """LBP-TOP for the paper's baselines, ConvNet features for the extra row."""
    if wildcards.method == "rf_convnet_mean":
        return feature_stores(wildcards)
    return lbptop_stores()


def get_baseline_convnet(wildcards):
    """The fold's ConvNets, whose feature stores the extra row reads (none for LBP-TOP)."""
    if wildcards.method == "rf_convnet_mean":
        return fold_convnets(wildcards)
    return []


def get_baseline_convnet_seeds(wildcards):
    """Each seed's ConvNet seed, for the extra row (the LBP-TOP forests use no ConvNet)."""
    if wildcards.method == "rf_convnet_mean":
        return seeds_convnets()
    return None


def get_baseline2_per_class(wildcards):
    """Baseline-2's draw per class; the other forests train on every training clip."""
    if wildcards.method == "baseline2":
        return config["baselines"]["baseline2_per_class"]
    return None


def get_baseline_lbptop(wildcards):
    """The LBP-TOP parameters the paper's baselines' stores were built under."""
    if wildcards.method in ("baseline1", "baseline2"):
        return config["baselines"]["lbptop"]
    return None


def get_baseline_layer(wildcards):
    """The feature layer the extra row's feature stores hold."""
    if wildcards.method == "rf_convnet_mean":
        return LAYER
    return None


def all_predictions():
    return expand(
        f"{RESULTS}/predictions/{{method}}/fold_{{fold}}/seed_{{seed}}.parquet",
        method=METHODS,
        fold=FOLDS,
        seed=SEEDS,
    )


# ---- the predict target (rules/predict.smk): evaluated only when it is asked for


@functools.cache
def predict_videos():
    """Output name -> video of the predict target: config predict.videos (a folder of videos,
    a glob or a manifest CSV), named as `videmotion predict --out` names them."""
    from videmotion.predict import expand_videos, output_names

    spec = config["predict"]["videos"]
    if not spec:
        raise ValueError(
            "the predict target needs config predict.videos, e.g. "
            "snakemake predict --config predict='{videos: my_clips/}'"
        )
    videos, problems = expand_videos([spec])
    if problems or not videos:
        why = "; ".join(problems) or f"no video in {spec}"
        raise ValueError(f"predict.videos: {why}")
    return dict(zip(output_names(videos), videos))


def get_predict_video(wildcards):
    return predict_videos()[wildcards.name]


def get_predict_model(wildcards):
    """predict.model, or this workflow's attention LSTM of the first fold and seed."""
    model = config["predict"]["model"]
    return (
        model
        or f"{RESULTS}/temporal/attention_lstm/fold_{FOLDS[0]}/seed_{SEEDS[0]}/model.pt"
    )


def get_predict_params(wildcards):
    """The analysis keys of the predict section (not its inputs: videos, model)."""
    return {k: v for k, v in config["predict"].items() if k not in ("videos", "model")}


def predicted_frames(wildcards):
    return expand(f"{RESULTS}/predict/{{name}}/frames.parquet", name=predict_videos())


def predicted_windows(wildcards):
    return expand(f"{RESULTS}/predict/{{name}}/windows.parquet", name=predict_videos())
