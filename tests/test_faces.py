"""Face extraction: detector choice, tracking hand-off, fallback, alignment geometry, store v2, QC accounting."""

from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import drawn_face_frame, write_video
from videmotion.adapters import DatasetError
from videmotion.faces import (
    QUARANTINE_REASONS,
    Detection,
    FaceDetector,
    align_face,
    alignment_matrix,
    choose_face,
    crop_face,
    detect_frame,
    extract_clip,
    eye_roll,
    face_params,
)
from videmotion.stages import faces as faces_stage
from videmotion.stores import (
    DETECTOR_CODES,
    FACE_STORE_LAYOUT,
    FaceStoreWriter,
    StoreError,
    face_store_hash,
    read_face_store,
    store_face_params,
)

VJ, TRACK, MTCNN = DETECTOR_CODES["vj"], DETECTOR_CODES["track"], DETECTOR_CODES["mtcnn"]


def _clip(path, clip_id="c1"):
    return {"clip_id": clip_id, "path": str(path), "label": "happy", "subject": "s1", "split": "train"}


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _rotated_face(angle: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A drawn face at (160, 120), the frame rotated by `angle` degrees (counter-clockwise on screen)
    about the face centre; with the true eye centres after the rotation (from the renderer's geometry)."""
    from videmotion.synthetic import Identity

    frame = drawn_face_frame(center=(160, 120), half_height=60, seed=seed)
    ident = Identity.sample(np.random.default_rng(seed))
    a, b = 60 * ident.aspect, 60
    eyes = np.array([[160 - ident.eye_spacing * a, 120 - 0.14 * b], [160 + ident.eye_spacing * a, 120 - 0.14 * b]])
    rot = cv2.getRotationMatrix2D((160.0, 120.0), angle, 1.0)
    rotated = cv2.warpAffine(frame, rot, (320, 240), borderMode=cv2.BORDER_REPLICATE)
    return rotated, _apply(rot, eyes)


def test_choose_face_prefers_the_track_then_the_largest():
    small = Detection(np.array([10, 10, 20, 20], np.float32), 1.0, "vj")
    large = Detection(np.array([200, 100, 60, 60], np.float32), 1.0, "vj")
    assert choose_face([small, large], None) == (large, "largest")
    # a previous face near the small one: the track wins over size
    assert choose_face([small, large], np.array([12, 12, 20, 20], np.float32)) == (small, "track")


def test_crop_geometry_known_answer():
    gray = np.zeros((100, 100), np.uint8)
    gray[40:60, 30:50] = 255  # a 20x20 bright square
    crop = crop_face(gray, np.array([30, 40, 20, 20]), size=40, margin=0.5)
    # margin 0.5 on each side -> a 40x40 window centred on the square: square fills the middle half
    assert crop.shape == (40, 40)
    assert crop[10:30, 10:30].min() == 255 and crop[:8].max() == 0 and crop[:, :8].max() == 0


def test_crop_at_the_frame_edge_is_padded_not_shifted():
    gray = np.full((50, 50), 7, np.uint8)
    crop = crop_face(gray, np.array([-10, -10, 30, 30]), size=30, margin=0.0)
    assert crop.shape == (30, 30) and (crop == 7).all()


def test_alignment_matrix_levels_the_eyes_at_the_eye_line():
    # eyes 40 px apart on a line at 30 degrees (clockwise on screen), box side 80
    left = np.array([100.0, 100.0])
    right = left + 40 * np.array([math.cos(math.radians(30)), math.sin(math.radians(30))])
    landmarks = np.vstack([left, right, np.full((3, 2), np.nan)])
    assert eye_roll(landmarks) == pytest.approx(30.0)
    matrix, side = alignment_matrix(np.array([80, 70, 80, 80]), landmarks, margin=0.25, eye_line=0.4)
    assert side == 120  # 80 * (1 + 2 * 0.25)
    mapped = _apply(matrix, landmarks[:2])
    # level, 40 px apart, centred horizontally, at 40 % of the height
    np.testing.assert_allclose(mapped, [[40.0, 48.0], [80.0, 48.0]], atol=1e-6)


@pytest.mark.parametrize("angle", [15.0, -12.0])
def test_aligned_crop_of_a_rotated_drawn_face_has_level_eyes(angle):
    frame, true_eyes = _rotated_face(angle)
    params = face_params()
    detector = FaceDetector(params)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    found = detect_frame(detector, frame, gray, previous=None, full_pass=True)
    assert found, "neither detector found the rotated drawn face"
    face, _ = choose_face(found, None)
    landmarks = face.landmarks if face.landmarks is not None else detector.landmarks(frame, face.box)
    assert landmarks is not None
    # the landmarks see the roll (cv2's positive angle is counter-clockwise: the right eye goes up)
    assert eye_roll(landmarks) == pytest.approx(-angle, abs=4.0)
    matrix, side = alignment_matrix(face.box, landmarks, params["margin"], params["eye_line"])
    left, right = _apply(matrix, true_eyes)
    assert abs(math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))) < 3.0
    # and the aligned crop looks like the upright face's aligned crop (blurred: the boxes differ by a few px)
    upright = drawn_face_frame(center=(160, 120), half_height=60)
    upright_gray = cv2.cvtColor(upright, cv2.COLOR_BGR2GRAY)
    up_face, _ = choose_face(detect_frame(detector, upright, upright_gray, None, True), None)
    up_landmarks = up_face.landmarks if up_face.landmarks is not None else detector.landmarks(upright, up_face.box)
    reference = align_face(upright_gray, up_face.box, up_landmarks, 100, params["margin"], params["eye_line"])
    aligned = align_face(gray, face.box, landmarks, 100, params["margin"], params["eye_line"])
    unaligned = crop_face(gray, face.box, 100, params["margin"])

    def similarity(x: np.ndarray, y: np.ndarray) -> float:
        blur = lambda im: cv2.GaussianBlur(im, (0, 0), 3).astype(float).ravel()  # noqa: E731
        return float(np.corrcoef(blur(x), blur(y))[0, 1])

    assert similarity(aligned, reference) > 0.85
    assert similarity(aligned, reference) > similarity(unaligned, reference) + 0.2


def test_tracking_follows_between_detections_at_the_set_cadence(face_video):
    params = face_params({"mtcnn_fallback": False, "redetect_every": 4, "verify_vj_every": 1})
    faces, qc = extract_clip(FaceDetector(params), _clip(face_video), params)
    assert qc.status == "used" and qc.faces_kept == 12, qc
    # detectors at frame 0 and then every 5th frame (4 tracked frames in between)
    np.testing.assert_array_equal(np.flatnonzero(faces.detector != TRACK), [0, 5, 10])
    assert qc.faces_track == 9 and qc.faces_vj == 3
    # the face drifts right by 6 px per frame: the tracked boxes follow it
    centers = faces.box[:, 0] + faces.box[:, 2] / 2
    np.testing.assert_allclose(np.diff(centers), 6.0, atol=3.0)
    # tracked faces carry the landmarks of their detection, moved with the box
    shifts = faces.landmarks[1:5, :, 0] - faces.landmarks[0, :, 0]
    np.testing.assert_allclose(shifts, np.repeat(np.diff(centers)[:4].cumsum()[:, None], 5, axis=1), atol=1e-3)


def test_a_face_that_jumps_is_re_detected_on_track_loss(tmp_path):
    frames = [drawn_face_frame(center=(85, 120), half_height=55)] * 6 + [
        drawn_face_frame(center=(235, 120), half_height=55)
    ] * 6
    path = write_video(tmp_path / "jump.avi", frames)
    params = face_params({"mtcnn_fallback": False, "redetect_every": 50})
    faces, qc = extract_clip(FaceDetector(params), _clip(path), params)
    assert qc.faces_kept == 12, qc
    centers = faces.box[:, 0] + faces.box[:, 2] / 2
    assert np.abs(centers[:6] - 85).max() < 10 and np.abs(centers[6:] - 235).max() < 10
    # the track was lost at the jump (not stuck on the empty place) and a detector took over
    assert faces.detector[6] == VJ and (faces.detector[7:] == TRACK).all() and (faces.detector[1:6] == TRACK).all()


def test_mtcnn_fallback_finds_faces_viola_jones_misses(face_video):
    # a Viola-Jones that can never fire: every face kept must come from MTCNN
    params = face_params({"vj_min_neighbors": 500, "max_frames": 3, "tracking": False})
    faces, qc = extract_clip(FaceDetector(params), _clip(face_video), params)
    assert qc.status == "used" and qc.fallback_used
    assert qc.faces_vj == 0 and qc.faces_mtcnn == qc.faces_kept == 3
    assert set(faces.detector) == {MTCNN}
    # MTCNN's own 5 landmarks, eyes left to right, nearly level on the upright face
    assert np.isfinite(faces.landmarks).all() and (faces.landmarks[:, 1, 0] > faces.landmarks[:, 0, 0]).all()
    assert all(abs(eye_roll(lm)) < 5 for lm in faces.landmarks) and faces.aligned.all()


def test_missing_landmarks_fall_back_to_the_unaligned_crop(face_video):
    params = face_params({"mtcnn_fallback": False, "max_frames": 4})
    detector = FaceDetector(params)
    detector.landmarks = lambda frame, box: None  # ONet sees no face: no landmarks
    faces, qc = extract_clip(detector, _clip(face_video), params)
    assert qc.faces_kept == 4 and qc.faces_aligned == 0 and not faces.aligned.any()
    assert np.isnan(faces.landmarks).all()
    first = cv2.cvtColor(drawn_face_frame(center=(120, 120)), cv2.COLOR_BGR2GRAY)
    expected = crop_face(first, faces.box[0], 100, params["margin"])
    assert np.abs(faces.faces[0].astype(int) - expected.astype(int)).mean() < 4  # same crop up to the codec


def test_qc_accounting_and_store_layout_v2(face_video, tmp_path):
    params = face_params({"frame_step": 2})
    faces, qc = extract_clip(FaceDetector(params), _clip(face_video), params)
    assert qc.frames_read == 12 and qc.frames_processed == 6 and qc.decode_errors == 0
    assert qc.faces_kept == qc.faces_vj + qc.faces_track + qc.faces_mtcnn == qc.choice_track + qc.choice_largest == 6
    assert qc.choice_largest == 1 and qc.faces_aligned == int(faces.aligned.sum()) == 6
    np.testing.assert_array_equal(faces.frame_index, [0, 2, 4, 6, 8, 10])
    path = tmp_path / "shard_0.h5"
    with FaceStoreWriter(path, faces=params, shard=0, n_shards=1) as writer:
        writer.add(faces)
    with h5py.File(path, "r") as fh:  # plain h5py: the documented v2 layout
        assert fh.attrs["layout"] == FACE_STORE_LAYOUT and fh.attrs["layout_version"] == 2
        group = fh["clips/c1"]
        assert group["landmarks"].dtype == np.float32 and group["landmarks"].shape == (6, 5, 2)
        assert group["aligned"].dtype == np.uint8 and group["score"].shape == (6,)
    (back,) = read_face_store(path, expected_hash=face_store_hash(params))
    assert store_face_params(path) == params
    np.testing.assert_array_equal(back.landmarks, faces.landmarks)
    np.testing.assert_array_equal(back.aligned, faces.aligned)
    np.testing.assert_array_equal(back.detector, faces.detector)
    with h5py.File(path, "r+") as fh:  # a v1 store is refused with the fix named
        fh.attrs["layout_version"] = 1
    with pytest.raises(StoreError, match="v1, expected .* v2.*rerun"):
        list(read_face_store(path))


@pytest.mark.parametrize("kind, reason", [("blank", "no_face"), ("text", "not_a_video"), ("empty", "empty_file")])
def test_bad_clips_are_excluded_with_a_reason(tmp_path, blank_video, kind, reason):
    path = {"blank": blank_video, "text": tmp_path / "t.mp4", "empty": tmp_path / "e.mp4"}[kind]
    if kind == "text":
        path.write_text("not a video at all")
    if kind == "empty":
        path.write_bytes(b"")
    params = face_params({"mtcnn_fallback": kind != "blank"})
    faces, qc = extract_clip(FaceDetector(params), _clip(path), params)
    assert faces is None and qc.status == "excluded" and qc.reason == reason
    assert qc.faces_kept == qc.faces_aligned == 0


def test_real_footage_faces_found_and_aligned(real_video):
    params = face_params({"max_frames": 24})
    faces, qc = extract_clip(FaceDetector(params), _clip(real_video), params)
    assert qc.status == "used"
    assert qc.faces_kept >= 22, qc  # one real face in every frame
    assert qc.faces_aligned >= 20 and np.isfinite(faces.landmarks[faces.aligned == 1]).all()


def test_mtcnn_over_a_batch_of_frames_finds_what_it_finds_frame_by_frame(real_video):
    """MTCNN batched over frames (one pass for all, what a GPU wants) against one frame at a
    time: the same faces, boxes and landmarks up to float rounding; a frame without a face
    in the batch stays without one; frames of two sizes are refused."""
    from videmotion.video import FrameStream

    frames = [frame for _, frame in FrameStream(real_video, max_frames=6)]
    frames.insert(3, np.full_like(frames[0], 90))  # a blank frame among them
    detector = FaceDetector(face_params())
    one_by_one = [detector.mtcnn_detect(frame) for frame in frames]
    batched = detector.mtcnn_detect_frames(frames)
    assert [len(found) for found in one_by_one] == [len(found) for found in batched] == [1, 1, 1, 0, 1, 1, 1]
    for single, batch in zip(one_by_one, batched):
        for a, b in zip(single, batch):
            assert b.detector == "mtcnn"
            np.testing.assert_allclose(b.box, a.box, atol=0.01)
            np.testing.assert_allclose(b.landmarks, a.landmarks, atol=0.01)
            assert b.score == pytest.approx(a.score, abs=1e-4)
    assert detector.mtcnn_detect_frames([]) == []
    with pytest.raises(ValueError, match="frames of one size"):
        detector.mtcnn_detect_frames([frames[0], frames[0][:200]])


# ---------------------------------------------------------------- data problems vs bugs
def _never(*args, **kwargs):
    raise AssertionError("a detector ran on a frame too small for it")


@pytest.mark.parametrize(
    "side, mtcnn, reason, need",
    [
        (24, True, "frame_too_small", r"at least 40 px .*mtcnn_min_face_size 40"),
        (20, False, "frame_too_small", r"at least 24 px"),
        (24, False, "no_face", None),
    ],
    ids=["24px_with_mtcnn", "20px_viola_jones_only", "24px_viola_jones_only"],
)
def test_frames_smaller_than_the_detectors_take_are_quarantined_before_detection(tmp_path, side, mtcnn, reason, need):
    """24x24 frames crash MTCNN itself (`torch.cat(): expected a non-empty list`): the size is checked first."""
    path = write_video(tmp_path / "tiny.avi", [np.full((side, side, 3), 120, np.uint8)] * 3)
    params = face_params({"mtcnn_fallback": mtcnn, "min_faces": 1})
    detector = FaceDetector(params)
    if reason == "frame_too_small":
        detector.viola_jones = detector.mtcnn_detect = _never
    faces, qc = extract_clip(detector, _clip(path), params)
    assert faces is None and (qc.status, qc.reason) == ("excluded", reason), qc
    assert reason in QUARANTINE_REASONS
    # the frames the stage read before it decided, not however far its decoding thread got
    assert qc.frames_read == (1 if reason == "frame_too_small" else 3)
    if need:
        assert f"frames are {side}x{side} px" in qc.detail and re.search(need, qc.detail), qc.detail


def test_frame_size_is_judged_at_the_detect_scale():
    detector = FaceDetector(face_params({"detect_width": 320, "mtcnn_min_face_size": 40}))
    assert detector.min_frame_side() == 40
    assert detector.frame_too_small((240, 320, 3)) == ""
    # 1280x120 is downscaled to 320x30: too small for MTCNN's 40 px
    assert "1280x120 px (320x30 px at faces.detect_width 320)" in detector.frame_too_small((120, 1280, 3))
    # facenet-pytorch's own float test: 47 * (12 / 47) < 12, so a 47 px minimum face needs 48 px
    assert FaceDetector(face_params({"mtcnn_min_face_size": 47})).min_frame_side() == 48


def test_mtcnn_near_a_face_at_the_frame_corner_does_not_crash():
    """A window clipped by the frame corner can be smaller than MTCNN's smallest face: no faces, no crash."""
    detector = FaceDetector(face_params({"mtcnn_min_face_size": 40}))
    frame = drawn_face_frame()
    assert detector.mtcnn_detect(frame, near=np.array([0, 0, 15, 15], np.float32)) == []  # a 30x30 px window


def test_a_library_exception_propagates_naming_the_clip(face_video, tmp_path, monkeypatch):
    """Only data problems are quarantined: an exception from a detector fails the clip's job, not the clip."""
    params = face_params({"min_faces": 1})
    detector = FaceDetector(params)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug inside the detector")

    detector.viola_jones = broken
    with pytest.raises(RuntimeError, match="a bug inside the detector") as err:
        extract_clip(detector, _clip(face_video, clip_id="clip_x"), params)
    assert any("clip_x" in note and str(face_video) in note for note in err.value.__notes__)
    # the stage glue: the job fails and writes neither its store nor its QC part
    clips = tmp_path / "clips.csv"
    pd.DataFrame([_clip(face_video, clip_id="clip_x") | {"shard": 0}]).to_csv(clips, index=False)
    monkeypatch.setattr(FaceDetector, "mtcnn_detect", broken)
    monkeypatch.setattr(FaceDetector, "viola_jones", broken)
    store, qc_part = tmp_path / "shard_0.h5", tmp_path / "qc_shard_0.parquet"
    with pytest.raises(RuntimeError, match="a bug inside the detector"):
        faces_stage.extract_faces(
            clips=str(clips), store=str(store), qc=str(qc_part), shard=0, shards=1, faces={"min_faces": 1}, device="cpu"
        )
    assert not store.exists() and not qc_part.exists()


def test_every_quarantine_reason_raised_is_documented():
    """The reasons the face stage can give (video.py and the faces package) are the documented ones, and vice versa."""
    package = Path(__file__).resolve().parents[1] / "workflow/videmotion"
    files = [package / "video.py", *sorted((package / "faces").glob("*.py"))]
    source = "".join(f.read_text() for f in files)
    raised = set(re.findall(r'ClipReadError\("(\w+)"', source)) | set(re.findall(r'"(no_face|too_few_faces)"', source))
    assert raised == set(QUARANTINE_REASONS)


def _qc_rows(spec: dict[str, tuple[int, dict[str, int]]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A clip table and its QC rows: {split: (clips, {reason: excluded clips})}."""
    clips, qc = [], []
    for split, (n, reasons) in spec.items():
        excluded = [r for r, k in reasons.items() for _ in range(k)]
        for i in range(n):
            cid = f"{split}_{i}"
            clips.append(
                {
                    "clip_id": cid,
                    "path": f"/d/{cid}.avi",
                    "label": "happy",
                    "subject": f"s_{split}",
                    "split": split,
                    "shard": 0,
                }
            )
            reason = excluded[i] if i < len(excluded) else ""
            qc.append(
                {
                    "clip_id": cid,
                    "path": f"/d/{cid}.avi",
                    "split": split,
                    "status": "excluded" if reason else "used",
                    "reason": reason,
                    "detail": f"why {cid}" if reason else "",
                    "frames_processed": 5,
                    "faces_kept": 0 if reason else 5,
                    "faces_mtcnn": 0,
                    "faces_aligned": 0,
                }
            )
    return pd.DataFrame(clips), pd.DataFrame(qc)


def test_face_qc_fails_when_a_split_loses_too_many_clips(tmp_path):
    clips, qc = _qc_rows(
        {"train": (40, {"no_face": 1}), "val": (10, {}), "test": (10, {"missing": 1, "frame_too_small": 1})}
    )
    clips.to_csv(tmp_path / "clips.csv", index=False)
    qc.to_parquet(tmp_path / "qc_shard_0.parquet")
    out, summary = tmp_path / "qc/faces.parquet", tmp_path / "qc/faces_summary.tsv"
    with pytest.raises(DatasetError) as err:
        faces_stage.face_qc(
            clips=str(tmp_path / "clips.csv"),
            shard_qc=[str(tmp_path / "qc_shard_0.parquet")],
            qc=str(out),
            summary=str(summary),
            max_excluded_fraction=0.05,
        )
    message = str(err.value)
    assert "faces.max_excluded_fraction = 5.0%" in message and "['test']" in message
    assert "train: 40 clips in, 1 excluded (2.5%): no_face 1" in message
    assert "val: 10 clips in, 0 excluded (0.0%)" in message
    assert "test: 10 clips in, 2 excluded (20.0%): frame_too_small 1, missing 1" in message
    assert message.index("test_0 (test): missing: why test_0") < message.index(
        "train_0 (train): no_face"
    )  # the failing split first
    assert not out.exists() and not summary.exists()
    # at the limit it passes, and the outputs are written
    faces_stage.face_qc(
        clips=str(tmp_path / "clips.csv"),
        shard_qc=[str(tmp_path / "qc_shard_0.parquet")],
        qc=str(out),
        summary=str(summary),
        max_excluded_fraction=0.2,
    )
    assert len(pd.read_parquet(out)) == 60 and summary.is_file()
