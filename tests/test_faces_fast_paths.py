"""The face stage's cheaper paths: each gives the answer of the slower path it stands for,
or one within a stated tolerance, and the stage stays deterministic."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import videmotion.faces as faces_mod
import videmotion.faces.clip as faces_clip
from conftest import drawn_face_frame, write_video
from videmotion.faces import (
    TRACK_LOCAL_SHIFT,
    VERIFY_WINDOW,
    FaceDetector,
    _track_scale,
    align_face,
    alignment_matrix,
    extract_clip,
    face_params,
    onet_forward,
)
from videmotion.stores import DETECTOR_CODES

VJ, TRACK = DETECTOR_CODES["vj"], DETECTOR_CODES["track"]


def _clip(path, clip_id="c1"):
    return {"clip_id": clip_id, "path": str(path), "label": "happy", "subject": "s1", "split": "train"}


def test_onet_forward_is_bit_identical_to_onet():
    onet = FaceDetector(face_params()).mtcnn.onet
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        for _ in range(20):
            rgb = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
            tensor = (
                torch.from_numpy(rgb).permute(2, 0, 1)[None].float() - 127.5
            ) * 0.0078125  # as FaceDetector.landmarks builds it
            for x in (tensor, tensor.contiguous()):
                for ours, theirs in zip(onet_forward(onet, x), onet(x)):
                    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    "side, template, k", [(195.2, 32, 6), (100, 32, 3), (47, 32, 1), (40, 32, 1), (20, 32, 1), (48, 32, 2), (64, 16, 4)]
)
def test_tracking_downscale_is_one_over_the_nearest_integer(side, template, k):
    assert _track_scale(side, template) == 1.0 / k


def _exact_aligned(gray, box, landmarks, size, margin, eye_line):
    """The crop as defined: warp to the full `side` px, then INTER_AREA to size x size."""
    matrix, side = alignment_matrix(box, landmarks, margin, eye_line)
    crop = cv2.warpAffine(gray, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize(
    "half_height, roll, cx, cy",
    [
        (110, 0.0, 320, 240),
        (130, 7.0, 320, 240),
        (150, -12.0, 320, 240),
        (120, 5.0, 90, 240),
        (120, -8.0, 560, 400),
        (160, 3.0, 320, 120),
    ],
)
def test_large_aligned_crops_stay_within_a_grey_level_of_the_exact_warp(half_height, roll, cx, cy):
    """Faces whose crop side is at least 2x face_size are block-averaged under the crop, then
    warped to face_size; near the frame's edges too, where the crop overhangs the frame."""
    gray = cv2.cvtColor(
        drawn_face_frame(640, 480, center=(cx, cy), half_height=half_height, seed=3), cv2.COLOR_BGR2GRAY
    )
    side = 2.0 * half_height * 0.9
    box = np.array([cx - side / 2, cy - side / 2, side, side], np.float32)
    d = 0.2 * side
    t = np.radians(roll)
    eyes = np.array([[cx - d * np.cos(t), cy - 15 - d * np.sin(t)], [cx + d * np.cos(t), cy - 15 + d * np.sin(t)]])
    landmarks = np.vstack([eyes, [[cx, cy + 20], [cx - 20, cy + 50], [cx + 20, cy + 50]]]).astype(np.float32)
    assert alignment_matrix(box, landmarks, 0.15, 0.4)[1] >= 200  # the fast path runs
    ours = align_face(gray, box, landmarks, 100, 0.15, 0.4).astype(int)
    exact = _exact_aligned(gray, box, landmarks, 100, 0.15, 0.4).astype(int)
    assert np.abs(ours - exact).mean() < 1.0
    assert abs((ours - exact).mean()) < 0.3  # no shift or brightness bias


def test_small_aligned_crops_are_the_exact_warp():
    gray = cv2.cvtColor(drawn_face_frame(seed=1), cv2.COLOR_BGR2GRAY)
    box = np.array([110, 70, 100, 100], np.float32)  # crop side 130 < 2 x 100: the plain path
    landmarks = np.array([[140, 105], [180, 108], [160, 125], [145, 145], [175, 146]], np.float32)
    np.testing.assert_array_equal(
        align_face(gray, box, landmarks, 100, 0.15, 0.4), _exact_aligned(gray, box, landmarks, 100, 0.15, 0.4)
    )


def _follow_both_ways(detector, gray0, box, gray1):
    """follow() on gray1 from a track started on gray0, and the whole-window search's answer."""
    track = detector.start_track(gray0, box, None)
    x0, y0, x1, y1 = faces_mod._window(track.box, detector.params["track_window"], gray1.shape)
    window = faces_mod._resize(gray1[y0:y1, x0:x1], track.scale)
    _, peak, _, (px, py) = cv2.minMaxLoc(cv2.matchTemplate(window, track.template, cv2.TM_CCOEFF_NORMED))
    whole = np.array([x0 + px / track.scale, y0 + py / track.scale]) - track.offset
    found = detector.follow(gray1, track)
    return found, whole, peak


@pytest.mark.parametrize("shift", [0, 5, -9, 16, 45])
def test_local_template_search_finds_what_the_whole_window_finds(shift):
    """Small moves are found in the neighbourhood of the last position, large ones by the
    whole-window search; either way the answer is the whole window's best match."""
    detector = FaceDetector(face_params())
    gray0 = cv2.cvtColor(drawn_face_frame(center=(150, 120)), cv2.COLOR_BGR2GRAY)
    gray1 = cv2.cvtColor(drawn_face_frame(center=(150 + shift, 120 + shift // 3)), cv2.COLOR_BGR2GRAY)
    box = np.array([95, 60, 110, 120], np.float32)
    found, whole, _ = _follow_both_ways(detector, gray0, box, gray1)
    assert found is not None
    np.testing.assert_allclose(found.box[:2], whole, atol=1e-4)
    k = 1 / _track_scale(120, detector.params["track_template"])
    np.testing.assert_allclose(
        found.box[:2] - box[:2], [shift, shift // 3], atol=k
    )  # the true move, to a template pixel
    assert TRACK_LOCAL_SHIFT * k < 45  # the 45 px move is beyond the neighbourhood: the whole window was searched


@pytest.mark.parametrize("k", [1, 2, 3, 5, 6])
def test_a_downscaled_part_of_the_window_is_that_part_of_the_downscaled_window(k):
    """The tracker downscales only the neighbourhood it searches first; its pixels are the
    downscaled window's, bit for bit, wherever the part lies (the window's last partial
    block included)."""
    rng = np.random.default_rng(k)
    gray = rng.integers(0, 256, (360, 640), dtype=np.uint8)
    for _ in range(60):
        x0, y0 = int(rng.integers(0, 200)), int(rng.integers(0, 100))
        x1, y1 = min(640, x0 + int(rng.integers(40, 440))), min(360, y0 + int(rng.integers(40, 260)))
        whole = faces_mod._resize(gray[y0:y1, x0:x1], 1.0 / k)
        v0, u0 = int(rng.integers(0, whole.shape[0] - 2)), int(rng.integers(0, whole.shape[1] - 2))
        rows, cols = int(rng.integers(1, whole.shape[0] - v0 + 1)), int(rng.integers(1, whole.shape[1] - u0 + 1))
        part = faces_mod._downscaled_part(gray, (x0, y0, x1, y1), 1.0 / k, (v0, u0, rows, cols))
        np.testing.assert_array_equal(part, whole[v0 : v0 + rows, u0 : u0 + cols])


def _moving_face_video(tmp_path, n=23):
    frames = [drawn_face_frame(center=(110 + 4 * i, 120 + (i % 3))) for i in range(n)]
    return write_video(tmp_path / "moving.avi", frames)


def test_a_live_track_is_verified_in_the_tight_window(tmp_path, monkeypatch):
    params = face_params({"mtcnn_fallback": False, "redetect_every": 5, "verify_vj_every": 1})
    calls = {"detect_frame": 0, "tight": 0}
    detect_frame = faces_mod.detect_frame

    def counting_detect_frame(*args, **kwargs):
        calls["detect_frame"] += 1
        return detect_frame(*args, **kwargs)

    near = FaceDetector.viola_jones_near

    def counting_near(self, gray, previous, window=None):
        calls["tight"] += window == VERIFY_WINDOW
        return near(self, gray, previous, window)

    monkeypatch.setattr(faces_clip, "detect_frame", counting_detect_frame)  # where FaceFollower looks it up
    monkeypatch.setattr(FaceDetector, "viola_jones_near", counting_near)
    faces, qc = extract_clip(FaceDetector(params), _clip(_moving_face_video(tmp_path)), params)
    assert qc.faces_kept == 23
    np.testing.assert_array_equal(np.flatnonzero(faces.detector != TRACK), [0, 6, 12, 18])  # the cadence is unchanged
    assert calls == {
        "detect_frame": 1,
        "tight": 3,
    }  # the first frame only; every verification found the face in the tight window
    centers = faces.box[:, 0] + faces.box[:, 2] / 2
    np.testing.assert_allclose(centers - (110 + 4 * np.arange(23)), 0, atol=8)


def test_a_failed_tight_verification_falls_back_to_the_wide_search(tmp_path, monkeypatch):
    params = face_params({"mtcnn_fallback": False, "redetect_every": 5, "verify_vj_every": 1})
    near = FaceDetector.viola_jones_near
    monkeypatch.setattr(
        FaceDetector,
        "viola_jones_near",
        lambda self, gray, previous, window=None: [] if window == VERIFY_WINDOW else near(self, gray, previous, window),
    )
    faces, qc = extract_clip(FaceDetector(params), _clip(_moving_face_video(tmp_path)), params)
    assert qc.faces_kept == 23
    np.testing.assert_array_equal(np.flatnonzero(faces.detector != TRACK), [0, 6, 12, 18])


def _counting(monkeypatch, name, calls):
    original = getattr(FaceDetector, name)

    def counted(self, *args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FaceDetector, name, counted)


def test_onet_confirms_the_track_between_viola_jones_checks(tmp_path, monkeypatch):
    """verify_vj_every 3: the 1st and 2nd verifications run ONet alone on the tracked box
    (fresh landmarks, a new template), the 3rd re-detects with Viola-Jones."""
    params = face_params({"mtcnn_fallback": False, "redetect_every": 5, "verify_vj_every": 3})
    calls: dict[str, int] = {}
    _counting(monkeypatch, "viola_jones_near", calls)
    _counting(monkeypatch, "landmarks", calls)
    _counting(monkeypatch, "start_track", calls)
    faces, qc = extract_clip(FaceDetector(params), _clip(_moving_face_video(tmp_path)), params)
    assert qc.faces_kept == 23 and qc.faces_aligned == 23
    np.testing.assert_array_equal(
        np.flatnonzero(faces.detector != TRACK), [0, 18]
    )  # Viola-Jones at the start and on the 3rd check
    # ONet on frames 0 (the detection), 6 and 12 (the checks) and 18 (the Viola-Jones box); a new template each time
    assert calls == {"viola_jones_near": 1, "landmarks": 4, "start_track": 4}
    moved = faces.landmarks[5] + (faces.box[6, :2] - faces.box[5, :2])  # frame 5's landmarks, moved with the box
    assert not np.allclose(faces.landmarks[6], moved, atol=1e-3)  # frame 6 has ONet's own
    np.testing.assert_allclose(
        faces.landmarks[7], faces.landmarks[6] + (faces.box[7, :2] - faces.box[6, :2]), atol=1e-3
    )
    centers = faces.box[:, 0] + faces.box[:, 2] / 2
    np.testing.assert_allclose(centers - (110 + 4 * np.arange(23)), 0, atol=8)


def test_a_check_where_onet_sees_no_face_goes_to_viola_jones(tmp_path, monkeypatch):
    params = face_params({"mtcnn_fallback": False, "redetect_every": 5, "verify_vj_every": 3})
    landmarks = FaceDetector.landmarks
    state = {"frame": 0}

    def no_face_on_checks(self, frame, box):  # ONet finds the detected faces' landmarks, and no face on any tracked box
        state["frame"] += 1
        return landmarks(self, frame, box) if state["frame"] % 2 else None

    monkeypatch.setattr(FaceDetector, "landmarks", no_face_on_checks)
    faces, qc = extract_clip(FaceDetector(params), _clip(_moving_face_video(tmp_path)), params)
    assert qc.faces_kept == 23
    np.testing.assert_array_equal(np.flatnonzero(faces.detector != TRACK), [0, 6, 12, 18])


def test_without_alignment_every_check_runs_viola_jones(tmp_path, monkeypatch):
    params = face_params({"mtcnn_fallback": False, "redetect_every": 5, "verify_vj_every": 3, "align": False})
    monkeypatch.setattr(FaceDetector, "landmarks", lambda self, frame, box: pytest.fail("ONet ran with align off"))
    faces, qc = extract_clip(FaceDetector(params), _clip(_moving_face_video(tmp_path)), params)
    assert qc.faces_kept == 23 and qc.faces_aligned == 0
    np.testing.assert_array_equal(np.flatnonzero(faces.detector != TRACK), [0, 6, 12, 18])


def test_same_clip_same_crops(tmp_path):
    path = _moving_face_video(tmp_path)
    params = face_params({"redetect_every": 5})
    a, _ = extract_clip(FaceDetector(params), _clip(path), params)
    b, _ = extract_clip(FaceDetector(params), _clip(path), params)
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_array_equal(a.box, b.box)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)


def _onet_input(rgb: np.ndarray) -> np.ndarray:
    """A 48x48 RGB uint8 face as FaceDetector.landmarks hands it to ONet."""
    return np.ascontiguousarray(
        ((rgb.transpose(2, 0, 1).astype(np.float32) - np.float32(127.5)) * np.float32(0.0078125))[None]
    )


def test_onet_in_opencv_gives_torchs_outputs():
    """faces.onet_runtime opencv: facenet-pytorch's ONet exported to ONNX and run by OpenCV's
    dnn module gives the landmarks and face probability of the torch network, to 1e-5."""
    onet = FaceDetector(face_params()).mtcnn.onet
    opencv, reference = faces_mod.landmark_net(onet, "cpu", "opencv"), faces_mod.landmark_net(onet, "cpu", "torch")
    rng = np.random.default_rng(1)
    drawn = cv2.resize(drawn_face_frame()[50:190, 90:230], (48, 48), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    inputs = [_onet_input(drawn)] + [_onet_input(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) for _ in range(10)]
    for x in inputs:
        (points, prob), (ref_points, ref_prob) = opencv(x), reference(x)
        assert points.shape == (10,) and prob.shape == (2,)
        np.testing.assert_allclose(points, ref_points, atol=1e-5)
        np.testing.assert_allclose(prob, ref_prob, atol=1e-5)
    with torch.inference_mode():  # and the torch runtime is facenet-pytorch's network itself
        _, points, prob = onet(torch.from_numpy(inputs[0]))
    np.testing.assert_array_equal(reference(inputs[0])[0], points.numpy()[0])
    assert reference(inputs[0])[1][1] > face_params()["landmark_min_prob"]  # the drawn face is a face to ONet


@pytest.mark.parametrize(
    "runtime, device, resolved",
    [
        ("auto", "cpu", "opencv"),
        ("auto", "cuda", "torch"),
        ("auto", "cuda:1", "torch"),
        ("torch", "cpu", "torch"),
        ("opencv", "cuda", "opencv"),
    ],
)
def test_auto_runs_onet_in_opencv_on_a_cpu_and_in_torch_on_a_gpu(runtime, device, resolved):
    assert faces_mod.onet_runtime_for(runtime, device) == resolved


def test_opencv_onet_without_onnx_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # an import of onnx now fails
    with pytest.raises(ImportError, match="onnx package.*faces.onet_runtime: torch"):
        faces_mod.landmark_net(FaceDetector(face_params()).mtcnn.onet, "cpu", "opencv")


def test_either_onet_runtime_gives_the_same_faces(tmp_path):
    """The stage with ONet in OpenCV keeps the faces it keeps with ONet in torch: the same
    frames, boxes and detectors, landmarks within 0.01 px, crops within a grey level."""
    path = _moving_face_video(tmp_path)
    runs = {}
    for runtime in ("torch", "opencv"):
        params = face_params({"redetect_every": 5, "onet_runtime": runtime})
        detector = FaceDetector(params)
        assert detector.onet_runtime == runtime
        runs[runtime], _ = extract_clip(detector, _clip(path), params)
    a, b = runs["torch"], runs["opencv"]
    assert len(a.faces) == 23
    np.testing.assert_array_equal(a.frame_index, b.frame_index)
    np.testing.assert_array_equal(a.detector, b.detector)
    np.testing.assert_array_equal(a.box, b.box)
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.01)
    assert np.abs(a.faces.astype(int) - b.faces.astype(int)).max() <= 1
