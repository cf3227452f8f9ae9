"""Dataset adapters on small files the tests write: manifests, frame folders, CHEAVD, FER."""

from __future__ import annotations

import hashlib
import logging

import cv2
import numpy as np
import pandas as pd
import pytest
from videmotion.adapters import (
    DatasetError,
    assign_subject_folds,
    assign_subject_splits,
    load_cheavd_clips,
    load_fer_csv,
    load_fer_folders,
    load_manifest_clips,
    media_sha256,
    read_clips,
    shard_of,
    validate_clip_rows,
)
from videmotion.labels import CHEAVD_CLASSES, FER2013_CLASSES, check_fer_to_target
from videmotion.stages import corpus

CLASSES = list(CHEAVD_CLASSES)


def _manifest(tmp_path, rows, header="clip_id,path,label,subject,split"):
    path = tmp_path / "manifest.csv"
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


GOOD = [
    ("c1", "clips/a.avi", "happy", "s1", "train"),
    ("c2", "clips/b.avi", "sad", "s2", "val"),
    ("c3", "frames/c", "angry", "s3", "test"),
]


def test_manifest_paths_are_resolved_under_the_data_root(tmp_path):
    df = load_manifest_clips(_manifest(tmp_path, GOOD), tmp_path, classes=CLASSES)
    assert list(df.columns) == ["clip_id", "path", "label", "subject", "split"]
    assert df.loc[2, "path"] == str((tmp_path / "frames/c").resolve())


def test_label_map_translates_raw_labels(tmp_path):
    rows = [(c, p, {"happy": "HA", "sad": "SA", "angry": "AN"}[lab], s, sp) for c, p, lab, s, sp in GOOD]
    df = load_manifest_clips(
        _manifest(tmp_path, rows), tmp_path, classes=CLASSES, label_map={"HA": "happy", "SA": "sad", "AN": "angry"}
    )
    assert list(df["label"]) == ["happy", "sad", "angry"]


@pytest.mark.parametrize(
    "rows, message",
    [
        (GOOD + [("c1", "x.avi", "happy", "s9", "train")], "duplicate clip_id"),
        (GOOD + [("c4", "x.avi", "contempt", "s1", "train")], "unknown label.*contempt.*row"),
        (GOOD + [("c4", "x.avi", "happy", "s3", "train")], "more than one split"),
        (GOOD + [("c4", "../../etc/passwd", "happy", "s1", "train")], "escapes the data root"),
        (GOOD[:2], "no clip in split 'test'"),
    ],
)
def test_bad_manifests_fail_before_any_work(tmp_path, rows, message):
    with pytest.raises(DatasetError, match=message):
        load_manifest_clips(_manifest(tmp_path, rows), tmp_path, classes=CLASSES)


def test_manifest_without_split_gets_subject_disjoint_splits(tmp_path):
    rows = [(f"c{i}", f"v{i}.avi", "happy", f"s{i % 10}") for i in range(40)]
    df = load_manifest_clips(
        _manifest(tmp_path, rows, header="clip_id,path,label,subject"), tmp_path, classes=CLASSES, split_seed=3
    )
    assert set(df["split"]) == {"train", "val", "test"}
    assert (df.groupby("subject")["split"].nunique() == 1).all()


def test_subject_split_assignment_is_seeded():
    subjects = pd.Series([f"s{i}" for i in range(20)])
    a = assign_subject_splits(subjects, {"val": 0.2, "test": 0.2}, seed=1)
    assert a.equals(assign_subject_splits(subjects, {"val": 0.2, "test": 0.2}, seed=1))
    assert not a.equals(assign_subject_splits(subjects, {"val": 0.2, "test": 0.2}, seed=2))
    assert (a == "test").sum() == 4 and (a == "val").sum() == 4


def test_cheavd_class_folder_layout(tmp_path):
    for split, label, name in [
        ("train", "happy", "spk01_001"),
        ("val", "sad", "spk02_001"),
        ("test", "angry", "spk03_004"),
    ]:
        d = tmp_path / split / label
        d.mkdir(parents=True)
        (d / f"{name}.avi").write_bytes(b"x")
    df = load_cheavd_clips(tmp_path, classes=CLASSES)
    assert sorted(df["subject"]) == ["spk01", "spk02", "spk03"]
    assert set(df["split"]) == {"train", "val", "test"}


def test_shards_are_stable_and_in_range():
    ids = [f"clip{i}" for i in range(100)]
    shards = [shard_of(c, 4) for c in ids]
    assert set(shards) == {0, 1, 2, 3}
    assert shards == [shard_of(c, 4) for c in ids]


def _fer_csv(tmp_path, rows):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    return path


def test_fer_csv_reads_images_labels_usage(tmp_path):
    px = " ".join(str(i % 256) for i in range(2304))
    fer = load_fer_csv(_fer_csv(tmp_path, [f"3,{px},Training", f"6,{px},PublicTest", f"0,{px},PrivateTest"]))
    assert fer.images.shape == (3, 48, 48) and fer.images.dtype == np.uint8
    assert list(fer.labels) == [3, 6, 0] and list(fer.usage) == ["Training", "PublicTest", "PrivateTest"]
    assert fer.images[0, 0, 5] == 5


def test_fer_csv_wrong_pixel_count_names_the_row(tmp_path):
    px = " ".join("1" for _ in range(2304))
    with pytest.raises(DatasetError, match="row 3: expected 2304 pixel values"):
        load_fer_csv(_fer_csv(tmp_path, [f"3,{px},Training", "3,1 2 3,Training"]))


def test_fer_folders(tmp_path):
    for split in ("train", "test"):
        for cls in ("happy", "sad"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(10):
                cv2.imwrite(str(d / f"{i}.png"), np.full((48, 48), i, np.uint8))
    fer = load_fer_folders(tmp_path, seed=0, val_fraction=0.2)
    assert fer.images.shape == (40, 48, 48)
    assert (fer.usage == "PrivateTest").sum() == 20 and (fer.usage == "PublicTest").sum() == 4
    assert set(fer.labels) == {FER2013_CLASSES.index("happy"), FER2013_CLASSES.index("sad")}


def test_fer_to_target_mapping_is_checked():
    check_fer_to_target({"happy": "happy", "disgust": None}, CLASSES)
    with pytest.raises(
        ValueError, match=r"'joy' \(for FER's 'happy'\) is not a target class .*or to null when it has no counterpart"
    ):
        check_fer_to_target({"happy": "joy"}, CLASSES)
    with pytest.raises(ValueError, match="'contempt' is not a FER2013 class"):
        check_fer_to_target({"contempt": "angry"}, CLASSES)


def test_subject_folds_are_subject_independent_and_balanced():
    from videmotion.adapters import assign_subject_folds

    subjects = pd.Series([f"s{i % 23}" for i in range(100)])
    folds = assign_subject_folds(subjects, 10, seed=0)
    assert set(folds) == set(range(10))
    assert (pd.DataFrame({"s": subjects, "f": folds}).groupby("s")["f"].nunique() == 1).all()
    per_fold = pd.Series(subjects.groupby(folds).nunique())
    assert per_fold.max() - per_fold.min() <= 1  # 23 subjects over 10 folds: 2 or 3 each
    assert folds.equals(assign_subject_folds(subjects, 10, seed=0))
    with pytest.raises(DatasetError, match="needs at least 10 subjects"):
        assign_subject_folds(pd.Series(["a", "b", "c"]), 10, seed=0)


def test_fold_view_rotates_test_and_validation_folds():
    from videmotion.adapters import fold_view

    clips = pd.DataFrame({"clip_id": list("abcdef"), "split": ["train"] * 6, "cv_fold": [0, 0, 1, 1, 2, 2]})
    view = fold_view(clips, 2)
    assert list(view["split"]) == ["val", "val", "train", "train", "test", "test"]  # test = fold 2, val = fold 0
    assert list(clips["split"]) == ["train"] * 6  # the input is not modified
    fixed = clips.drop(columns="cv_fold")
    assert fold_view(fixed, 0) is fixed
    with pytest.raises(DatasetError, match="fixed protocol has fold 0 only"):
        fold_view(fixed, 1)


# ---------------------------------------------------------------- the same media under two clip ids
def _media_manifest(tmp_path, rows, header="clip_id,path,label,subject,split"):
    """A manifest over real files: each row's media is written with the given content (bytes, or a list of frames)."""
    for _, rel, content, *_ in rows:
        path = tmp_path / rel
        if isinstance(content, list):
            path.mkdir(parents=True, exist_ok=True)
            for i, frame in enumerate(content):
                cv2.imwrite(str(path / f"frame_{i}.png"), frame)
        elif content is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    return _manifest(tmp_path, [(c, rel, *rest) for c, rel, _, *rest in rows], header=header)


def _prepare(tmp_path, manifest):
    dataset = {
        "adapter": "manifest",
        "classes": CLASSES,
        "manifest": {"path": str(manifest), "data_root": str(tmp_path)},
    }
    return corpus.prepare_clips(dataset=dataset, manifest=str(manifest), clips=str(tmp_path / "clips.csv"), shards=2)


def _frames(seed):
    return [np.random.default_rng(seed + i).integers(0, 255, (20, 30), dtype=np.uint8) for i in range(3)]


def test_media_checksums_of_files_and_frame_folders(tmp_path, monkeypatch):
    (tmp_path / "a.avi").write_bytes(b"video bytes" * 1000)
    (tmp_path / "b.avi").write_bytes(b"video bytes" * 1000)
    (tmp_path / "empty.avi").write_bytes(b"")
    assert (
        media_sha256(tmp_path / "a.avi")
        == media_sha256(tmp_path / "b.avi")
        == hashlib.sha256(b"video bytes" * 1000).hexdigest()
    )
    for folder, frames in (("f1", _frames(0)), ("f2", _frames(0)), ("f3", _frames(0)[::-1])):
        (tmp_path / folder).mkdir()
        for i, frame in enumerate(frames):
            cv2.imwrite(str(tmp_path / folder / f"img{i}.png"), frame)
    assert (
        media_sha256(tmp_path / "f1") == media_sha256(tmp_path / "f2") != media_sha256(tmp_path / "f3")
    )  # order counts
    (tmp_path / "no_frames").mkdir()
    # nothing to compare: no checksum, and no crash (the face stage quarantines these clips)
    assert (
        media_sha256(tmp_path / "missing.avi")
        == media_sha256(tmp_path / "empty.avi")
        == media_sha256(tmp_path / "no_frames")
        == ""
    )

    def locked(path, chunk=0):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("videmotion.adapters.file_sha256", locked)
    assert media_sha256(tmp_path / "a.avi") == ""


def test_identical_media_in_train_and_test_stops_prepare_clips(tmp_path):
    video = b"the same recording" * 500
    rows = [
        ("c1", "clips/a.avi", video, "happy", "s1", "train"),
        ("c2", "clips/b.avi", b"other" * 10, "sad", "s2", "val"),
        ("c3", "clips/c.avi", b"third" * 10, "angry", "s3", "test"),
        ("c4", "clips/copy_of_a.avi", video, "happy", "s3", "test"),
    ]
    manifest = _media_manifest(tmp_path, rows)
    with pytest.raises(DatasetError) as err:
        _prepare(tmp_path, manifest)
    message = str(err.value)
    assert str(manifest) in message and "different splits" in message
    assert f"clip c1 ({tmp_path / 'clips/a.avi'}, subject s1, split train)" in message
    assert f"clip c4 ({tmp_path / 'clips/copy_of_a.avi'}, subject s3, split test)" in message
    assert "Fix: drop one row of each pair" in message
    assert not (tmp_path / "clips.csv").exists()  # nothing written: the run stops before any work


def test_identical_frame_folders_in_two_splits_stop_prepare_clips(tmp_path):
    rows = [
        ("c1", "seq/a", _frames(1), "happy", "s1", "train"),
        ("c2", "seq/b", _frames(2), "sad", "s2", "val"),
        ("c3", "seq/c", _frames(1), "angry", "s3", "test"),
    ]
    with pytest.raises(DatasetError, match=r"clip c1 .*split train.* and clip c3 .*split test"):
        _prepare(tmp_path, _media_manifest(tmp_path, rows))


def test_identical_media_within_one_split_is_a_warning(tmp_path, caplog):
    video = b"the same recording" * 500
    rows = [
        ("c1", "clips/a.avi", video, "happy", "s1", "train"),
        ("c2", "clips/b.avi", b"other" * 10, "sad", "s2", "val"),
        ("c3", "clips/c.avi", b"third" * 10, "angry", "s3", "test"),
        ("c4", "clips/copy_of_a.avi", video, "sad", "s4", "train"),
        ("c5", "clips/missing.avi", None, "sad", "s4", "train"),
        ("c6", "clips/also_missing.avi", None, "sad", "s3", "test"),
    ]
    with caplog.at_level(logging.WARNING, logger="videmotion"):
        clips = _prepare(tmp_path, _media_manifest(tmp_path, rows))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "clip c1" in warnings[0] and "clip c4" in warnings[0] and "one split" in warnings[0]
    written = read_clips(tmp_path / "clips.csv")
    assert written["media_sha256"].fillna("").tolist() == clips["media_sha256"].tolist()
    assert clips.loc[0, "media_sha256"] == clips.loc[3, "media_sha256"] == hashlib.sha256(video).hexdigest()
    assert (
        clips.loc[4, "media_sha256"] == clips.loc[5, "media_sha256"] == ""
    )  # missing files: no checksum, no false alarm


def test_identical_media_of_two_subjects_in_different_folds_stops_assign_folds(tmp_path, caplog):
    """k-fold puts whole subjects in folds: the same media under two subjects of one split can land in two folds."""
    splits = ["train", "train", "val", "test", "train", "val", "test", "train"]
    rows = [
        (f"c{i}", f"clips/{i}.avi", f"clip {i}".encode() * 20, "happy", f"s{i}", split)
        for i, split in enumerate(splits)
    ]
    rows.append(("c_copy", "clips/copy.avi", b"clip 0" * 20, "happy", "s_other", "train"))
    clips = _prepare(tmp_path, _media_manifest(tmp_path, rows))  # one split: a warning only
    seed = next(s for s in range(50) if len(set(assign_subject_folds(clips["subject"], 3, seed=s)[[0, 8]])) == 2)
    with pytest.raises(
        DatasetError, match=r"clip c0 .*subject s0, fold \d.* and clip c_copy .*subject s_other, fold \d.*same subject"
    ):
        corpus.assign_folds(
            clips=str(tmp_path / "clips.csv"),
            protocol="kfold",
            n_folds=3,
            fold_seed=seed,
            folds=str(tmp_path / "folds.csv"),
        )
    assert not (tmp_path / "folds.csv").exists()
    # the fixed protocol: the splits were checked by prepare_clips
    assert (
        corpus.assign_folds(
            clips=str(tmp_path / "clips.csv"),
            protocol="fixed",
            n_folds=3,
            fold_seed=seed,
            folds=str(tmp_path / "folds.csv"),
        )["cv_fold"]
        == 0
    ).all()


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [("c1", "a.avi", "happy", "s1", "train"), ("c 2", "b.avi", "happy", "s2", "test")],
            r"m\.csv row 3: column 'clip_id': 'c 2' does not match "
            r".*\(rule properties/clip_id/pattern of clips\.schema\.yaml\)",
        ),
        (
            [("c1", "a.avi", "happy", "s1", "train"), ("c2", "b.avi", "happy", "s2", "tset")],
            r"m\.csv row 3: column 'split': 'tset' is not one of \['train', 'val', 'test'\] "
            r"\(rule properties/split/enum",
        ),
        ([("c1", "", "happy", "s1", "train")], r"m\.csv row 2: column 'path': '' should be non-empty .*minLength"),
    ],
    ids=["clip_id_pattern", "split_enum", "empty_path"],
)
def test_clip_table_rows_are_validated_by_the_clip_schema(rows, message):
    df = pd.DataFrame(rows, columns=["clip_id", "path", "label", "subject", "split"])
    with pytest.raises(DatasetError, match=message):
        validate_clip_rows(df, "m.csv")


def test_clip_schema_requires_its_columns_and_ignores_others():
    df = pd.DataFrame({"clip_id": ["c1"], "path": ["a.avi"], "label": ["happy"], "split": ["train"], "notes": ["ok"]})
    with pytest.raises(
        DatasetError, match=r"m\.csv row 2: 'subject' is a required property \(rule required of clips\.schema\.yaml\)"
    ):
        validate_clip_rows(df, "m.csv")
    validate_clip_rows(df.assign(subject="s1", shard=0, media_sha256=""), "m.csv")  # a user's extra column is ignored
    with pytest.raises(DatasetError, match=r"column 'shard': -1 is less than the minimum of 0"):
        validate_clip_rows(df.assign(subject="s1", shard=-1), "m.csv")
