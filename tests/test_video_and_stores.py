"""Frame streams (video files, frame folders, bad files) and the HDF5 store layouts."""

from __future__ import annotations

import os
import threading
import time

import cv2
import h5py
import numpy as np
import pytest
from videmotion.config import face_params
from videmotion.stores import (
    FACE_STORE_LAYOUT,
    ClipFaces,
    FaceStoreWriter,
    StoreError,
    config_hash,
    face_store_hash,
    read_face_store,
    read_feature_stores,
    write_feature_store,
)
from videmotion.video import (
    READ_AHEAD_FRAMES,
    ClipReadError,
    FrameStream,
    open_clip,
    probe_clip,
    read_ahead,
    read_all_frames,
)


def test_video_round_trip(face_video):
    info = probe_clip(face_video)
    assert info.kind == "video" and info.width == 320 and info.height == 240
    assert info.fps == pytest.approx(10.0)
    frames = read_all_frames(face_video)
    assert len(frames) == 12 and frames[0].shape == (240, 320, 3)


def test_open_clip_probes_and_streams_through_one_capture(face_video, monkeypatch):
    """open_clip gives probe_clip's header and the frames FrameStream reads, opening the video once."""
    import videmotion.video as video_mod

    opened = []
    real_capture = cv2.VideoCapture
    monkeypatch.setattr(video_mod.cv2, "VideoCapture", lambda *a: opened.append(a) or real_capture(*a))
    info, stream = open_clip(face_video, max_frames=5)
    frames = [f for _, f in stream]
    assert len(opened) == 1
    monkeypatch.undo()
    assert info == probe_clip(face_video)
    assert stream.frames_read == 5
    for ours, theirs in zip(frames, read_all_frames(face_video, max_frames=5), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert len([f for _, f in stream]) == 5  # a second pass opens the video again
    with pytest.raises(ClipReadError, match="not_a_video"):
        bad = face_video.parent / "not_a_video.mp4"
        bad.write_bytes(b"no video here" * 100)
        open_clip(bad)


def test_frame_folder_in_natural_order(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in (1, 2, 10):  # natural order: 1, 2, 10 (not 1, 10, 2)
        img = np.full((20, 30), i * 20, np.uint8)  # grayscale frames become BGR
        cv2.imwrite(str(folder / f"frame_{i}.png"), img)
    (folder / "notes.txt").write_text("ignored")
    frames = read_all_frames(folder)
    assert [int(f[0, 0, 0]) for f in frames] == [20, 40, 200]
    assert frames[0].shape == (20, 30, 3)
    assert probe_clip(folder).kind == "frames"


def test_16_bit_frames_are_read_as_8_bit(tmp_path):
    """16-bit PNG frames (some lab cameras write them) reach the detectors as 8-bit images, not as a crash."""
    folder = tmp_path / "seq16"
    folder.mkdir()
    cv2.imwrite(str(folder / "0001.png"), np.full((20, 30, 3), 0xA0FF, np.uint16))
    cv2.imwrite(str(folder / "0002.png"), np.full((20, 30), 0x1200, np.uint16))
    frames = read_all_frames(folder)
    assert [f.dtype for f in frames] == [np.uint8, np.uint8]
    assert int(frames[0][0, 0, 0]) == 0xA0 and int(frames[1][0, 0, 2]) == 0x12 and frames[1].shape == (20, 30, 3)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty_file"),
        (lambda p: p.write_text("this is not a video"), "not_a_video"),
        (lambda p: None, "missing"),
    ],
)
def test_bad_clip_files_raise_with_reason(tmp_path, make, reason):
    path = tmp_path / "clip.mp4"
    make(path)
    with pytest.raises(ClipReadError) as err:
        probe_clip(path)
    assert err.value.reason == reason


def test_max_frames_caps_the_stream(face_video):
    stream = FrameStream(str(face_video), max_frames=5)
    assert [i for i, _ in stream] == [0, 1, 2, 3, 4]
    assert stream.frames_read == 5


@pytest.mark.parametrize("shape, run_frames, run", [((36, 64, 3), 8, 8), ((36, 64, 3), 3, 3), ((600, 800, 3), 8, 3)])
def test_read_ahead_hands_on_the_same_frames_decoded_ahead_within_bounds(shape, run_frames, run):
    """Every frame, in order. A thread decodes ahead while the caller works, but never more than
    `run` frames wait (`run_frames`, fewer once they hold 4 MiB here: 3 frames of 800x600),
    plus the one being decoded."""
    pulled = []
    lock = threading.Lock()

    def frames():
        for i in range(20):
            with lock:
                pulled.append(i)
            yield i, np.full(shape, i % 256, np.uint8)

    seen = []
    for index, frame in read_ahead(frames(), run_frames=run_frames, run_bytes=4 * 2**20):
        assert int(frame[0, 0, 0]) == index % 256
        seen.append(index)
        if index == 0:  # a slow first frame: the thread fills its allowance, and stops there
            deadline = time.monotonic() + 10
            while len(pulled) < min(20, 1 + run) and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.05)
            assert len(pulled) == min(20, 1 + run)
        with lock:
            assert len(pulled) - len(seen) <= run + 1
    assert seen == list(range(20))


def test_read_ahead_without_its_thread_hands_on_frame_by_frame(monkeypatch):
    monkeypatch.setenv("VIDEMOTION_DECODE_THREAD", "0")
    pulled = []

    def frames():
        for i in range(5):
            pulled.append(i)
            yield i, np.zeros((4, 4, 3), np.uint8)

    before = threading.active_count()
    for index, _ in read_ahead(frames()):
        assert pulled == list(range(index + 1)) and threading.active_count() == before


def test_read_ahead_raises_the_decoding_error_after_the_frames_before_it():
    def frames():
        for i in range(3):
            yield i, np.zeros((4, 4, 3), np.uint8)
        raise ClipReadError("unreadable", "frame 3 is damaged")

    seen = []
    with pytest.raises(ClipReadError, match="frame 3 is damaged"):
        for index, _ in read_ahead(frames()):
            seen.append(index)
    assert seen == [0, 1, 2]


def test_read_ahead_stops_its_thread_and_closes_the_frames_when_the_caller_stops(face_video):
    closed = []

    def frames():
        try:
            for i in range(1000):
                yield i, np.zeros((4, 4, 3), np.uint8)
        finally:
            closed.append(True)

    before = threading.active_count()
    stream = read_ahead(frames(), run_frames=4)
    assert [next(stream)[0] for _ in range(2)] == [0, 1]
    stream.close()  # what a for loop that breaks, or an exception in the caller, does
    assert closed == [True] and threading.active_count() == before
    # a real video: stopping after a few frames releases the capture and leaves no thread
    info, video = open_clip(face_video)
    for index, _ in read_ahead(video):
        if index == 2:
            break
    assert threading.active_count() == before and video.frames_read <= 3 + READ_AHEAD_FRAMES


def _clip(clip_id: str, n: int) -> ClipFaces:
    rng = np.random.default_rng(n)
    return ClipFaces(
        clip_id=clip_id,
        faces=rng.integers(0, 255, (n, 100, 100), dtype=np.uint8),
        frame_index=np.arange(0, 2 * n, 2, dtype=np.int32),
        box=rng.random((n, 4)).astype(np.float32),
        detector=np.zeros(n, np.uint8),
        score=np.ones(n, np.float32),
        attrs={"label": "happy", "subject": "s1", "split": "train", "source_path": "/x.avi", "fps": 10.0},
    )


def test_face_store_layout_and_round_trip(tmp_path):
    path = tmp_path / "shard_0.h5"
    clips = [_clip("a", 5), _clip("b", 70)]
    with FaceStoreWriter(path, faces=face_params({"margin": 0.2}), shard=0, n_shards=2) as writer:
        for clip in clips:
            writer.add(clip)
    with h5py.File(path, "r") as fh:  # readable with plain h5py, documented layout
        assert fh.attrs["layout"] == FACE_STORE_LAYOUT and fh.attrs["layout_version"] == 2
        ds = fh["clips/b/faces"]
        assert ds.dtype == np.uint8 and ds.shape == (70, 100, 100)
        assert ds.chunks == (64, 100, 100) and ds.compression == "gzip"
        assert fh["clips/b/frame_index"].dtype == np.int32
    back = {c.clip_id: c for c in read_face_store(path, expected_hash=face_store_hash(face_params({"margin": 0.2})))}
    np.testing.assert_array_equal(back["b"].faces, clips[1].faces)
    np.testing.assert_array_equal(back["a"].frame_index, clips[0].frame_index)
    assert back["a"].attrs["label"] == "happy"


def test_store_built_under_another_config_is_rejected(tmp_path):
    path = tmp_path / "s.h5"
    with FaceStoreWriter(path, faces=face_params({"margin": 0.1}), shard=0, n_shards=1) as w:
        w.add(_clip("a", 2))
    with pytest.raises(StoreError, match="another config"):
        list(read_face_store(path, expected_hash=face_store_hash(face_params({"margin": 0.2}))))


def test_corrupt_store_gives_clear_error(tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(b"\x89HDF garbage" * 10)
    with pytest.raises(StoreError, match="rerun the workflow"):
        list(read_face_store(path))


def test_failed_write_leaves_no_store(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError):
        with FaceStoreWriter(path, faces=face_params(), shard=0, n_shards=1) as w:
            w.add(_clip("a", 2))
            raise RuntimeError("killed mid-write")
    assert not path.exists()
    assert not [p for p in os.listdir(tmp_path)]  # temporary file cleaned too


def test_feature_store_round_trip(tmp_path):
    path = tmp_path / "f.h5"
    feats = {"a": (np.ones((3, 8), np.float32), np.array([0, 2, 4]), {"label": "sad", "subject": "s", "split": "val"})}
    write_feature_store(path, feats, cfg_hash="h", shard=0, layer="logits", convnet_sha256="0" * 64, face_params="{}")
    back = read_feature_stores([path], expected_hash="h")
    np.testing.assert_array_equal(back["a"][0], feats["a"][0])
    np.testing.assert_array_equal(back["a"][1], [0, 2, 4])
    with h5py.File(path) as fh:
        assert fh.attrs["feature_dim"] == 8 and fh.attrs["layer"] == "logits"


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
