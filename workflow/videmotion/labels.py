"""Label spaces and the explicit mapping between them.

The target space is CHEAVD's eight classes (the paper's "emotion type space").
Pretraining uses FER2013's seven classes, whose integer codes are fixed by the
official ``fer2013.csv`` (0=Angry ... 6=Neutral). Which FER class stands for which
target class is configuration (``pretrain.fer_to_target``), never implied by name.
"""

from __future__ import annotations

CHEAVD_CLASSES: tuple[str, ...] = (
    "neutral",
    "angry",
    "happy",
    "sad",
    "surprise",
    "disgust",
    "anxious",
    "fear",
)

# Index i is the code used in fer2013.csv's `emotion` column.
FER2013_CLASSES: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
)

FER2013_USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")


def class_index(classes: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Map each class name to its integer index."""
    return {name: i for i, name in enumerate(classes)}


def check_fer_to_target(mapping: dict[str, str | None], classes: list[str] | tuple[str, ...]) -> None:
    """Raise ValueError unless `mapping` (config ``pretrain_data.fer_to_target``) maps FER2013
    classes to target classes (or None). The workflow checks it before any work starts; the
    fine-tuning stage, which initialises its head from it, checks it again."""
    for fer_name, target in mapping.items():
        if fer_name not in FER2013_CLASSES:
            raise ValueError(
                f"pretrain_data.fer_to_target: {fer_name!r} is not a FER2013 class {list(FER2013_CLASSES)}"
            )
        if target is not None and target not in classes:
            raise ValueError(
                f"pretrain_data.fer_to_target: {target!r} (for FER's {fer_name!r}) "
                f"is not a target class {list(classes)}; "
                f"map {fer_name!r} to one of them, or to null when it has no counterpart"
            )
