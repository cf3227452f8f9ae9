"""Face extraction: detector choice, fallback, crop geometry, QC accounting for bad clips."""

from __future__ import annotations

import numpy as np
import pytest

from videmotion.faces import Detection, FaceDetector, choose_face, crop_face, extract_clip, face_params
from videmotion.stores import DETECTOR_CODES


def _clip(path, clip_id="c1"):
    return {"clip_id": clip_id, "path": str(path), "label": "happy", "subject": "s1", "split": "train"}


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


def test_viola_jones_extracts_the_drawn_face(face_video):
    params = face_params({"mtcnn_fallback": False})
    faces, qc = extract_clip(FaceDetector(params), _clip(face_video), params)
    assert qc.status == "used", qc
    assert qc.frames_read == 12 and qc.faces_vj >= 9 and qc.faces_mtcnn == 0
    assert faces.faces.shape[1:] == (100, 100) and faces.faces.dtype == np.uint8
    # the face drifts right by 6 px per frame: the boxes follow it
    centers = faces.box[:, 0] + faces.box[:, 2] / 2
    assert np.corrcoef(faces.frame_index, centers)[0, 1] > 0.9


def test_mtcnn_fallback_finds_faces_viola_jones_misses(face_video):
    # a Viola-Jones that can never fire: every face kept must come from MTCNN
    params = face_params({"vj_min_neighbors": 500, "max_frames": 3})
    faces, qc = extract_clip(FaceDetector(params), _clip(face_video), params)
    assert qc.status == "used" and qc.fallback_used
    assert qc.faces_vj == 0 and qc.faces_mtcnn == qc.faces_kept >= 2
    assert set(faces.detector) == {DETECTOR_CODES["mtcnn"]}


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


def test_real_footage_faces_found(real_video):
    params = face_params({"max_frames": 24})
    faces, qc = extract_clip(FaceDetector(params), _clip(real_video), params)
    assert qc.status == "used"
    assert qc.faces_kept >= 22, qc  # one real face in every frame
