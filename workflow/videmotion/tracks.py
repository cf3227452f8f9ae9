"""Every face of a video, each with a track id that stays the same across the video.

``videmotion predict --track all`` runs :class:`MultiFaceTracker` on every processed frame;
``--track largest`` (the default) runs the face stage's one-face rule
(:class:`videmotion.faces.FaceFollower`) instead, with track id 0. The tracker uses the face
stage's own detectors and template tracking (:class:`videmotion.faces.FaceDetector`) with the
same ``faces`` parameters, stored in the model file. Per processed frame:

1. **follow**: every live track follows its face by template matching (``FaceDetector.follow``).
2. **detect**: every ``redetect_every`` processed frames, on a frame where some track loses its
   face, and on every frame without a live track, the detectors look at the whole frame:
   MTCNN (with ``mtcnn_fallback``; in a run of frames without any face only on every
   ``fallback_every``-th frame, as in the face stage), Viola-Jones, and Viola-Jones near each
   live track that both missed. MTCNN runs on every detection frame here, not only where
   Viola-Jones fails, because a second face that Viola-Jones misses must be found although
   the first one is there: faces entering the video are found within ``redetect_every``
   processed frames.
3. **associate**: detections are matched to the live tracks by the IoU of their boxes, highest
   first, at least :data:`IOU_MIN`. On a detection frame, a track that no detection confirms
   is lost.
4. **re-identify**: a detection that matches no live track is compared with the tracks lost
   at most ``max_gap`` seconds ago: its box size (within :data:`REID_MAX_SIZE_RATIO`) and its
   appearance, the mean colours of a 4x4 grid over the face in CIELAB (:func:`appearance`;
   RMS difference at most :data:`REID_MAX_DISTANCE`), plus a small penalty for the distance
   moved. The closest such track gets its id back; otherwise the face starts a new track.
   New ids are given left to right within a frame, so ids are deterministic.
5. **duplicates**: two live tracks that converge on one face (IoU above
   :data:`DUPLICATE_IOU`) are merged into the older one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .faces import Detection, FaceDetector, Track

# Detections and tracks with at least this IoU are the same face.
IOU_MIN = 0.3
# Two live tracks overlapping more than this follow one face: the newer one is dropped.
DUPLICATE_IOU = 0.5
# Re-identification after a gap: appearance within this RMS colour difference (CIELAB units,
# 0-255 scale), box sides within this ratio. Measured: one real face over 2.4 s differs by at
# most 5.4; two drawn identities of the synthetic corpus by 10-40; the same drawn face over
# 2 s by at most 4.
REID_MAX_DISTANCE = 8.0
REID_MAX_SIZE_RATIO = 1.6
# Ranking of candidates: colour difference + this x distance moved (in box sides, capped at 10).
REID_DISTANCE_PENALTY = 0.5
# The appearance grid: the middle 80 % of the box as GRID x GRID mean colours.
DESCRIPTOR_GRID = 4
# A track's descriptor follows its face slowly: new = (1 - rate) old + rate current.
DESCRIPTOR_RATE = 0.3


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, float(x2 - x1)) * max(0.0, float(y2 - y1))
    union = float(a[2] * a[3] + b[2] * b[3]) - inter
    return inter / union if union > 0 else 0.0


def _centre_distance_in_sides(a: np.ndarray, b: np.ndarray) -> float:
    side = max(float(a[2]), float(a[3]), float(b[2]), float(b[3]), 1.0)
    return float(np.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[3] / 2 - b[1] - b[3] / 2)) / side


def appearance(frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """What a face looks like, cheaply: the middle 80 % of its box as DESCRIPTOR_GRID x
    DESCRIPTOR_GRID mean colours in CIELAB (float32, 3 x GRID^2 values; skin tone, hair, glasses
    tell drawn identities and real people apart). None when the box lies outside the frame."""
    x, y, w, h = (float(v) for v in box)
    x0, y0 = int(max(0, round(x + 0.1 * w))), int(max(0, round(y + 0.1 * h)))
    x1, y1 = int(min(frame.shape[1], round(x + 0.9 * w))), int(min(frame.shape[0], round(y + 0.9 * h)))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    lab = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_BGR2LAB)
    return cv2.resize(lab, (DESCRIPTOR_GRID, DESCRIPTOR_GRID), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()


def appearance_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference of two :func:`appearance` descriptors (CIELAB units)."""
    return float(np.sqrt(np.mean((a - b) ** 2)))


@dataclass
class FaceTrack:
    """One person's face across the video."""

    track_id: int
    box: np.ndarray
    landmarks: np.ndarray | None
    follower: Track | None  # the template tracker started at the last detection
    descriptor: np.ndarray | None
    last_seen: float  # seconds


class MultiFaceTracker:
    """All faces of a video, frame by frame, each with a stable track id (see the module's docstring)."""

    def __init__(self, detector: FaceDetector, params: dict, max_gap: float):
        self.detector, self.params, self.max_gap = detector, params, float(max_gap)
        self.live: list[FaceTrack] = []
        self.lost: list[FaceTrack] = []
        self.next_id = 0
        self.since_detect = 0  # processed frames since the last detection frame
        self.misses = 0  # consecutive processed frames without any face

    # ------------------------------------------------------------------ per frame
    def step(self, frame: np.ndarray, gray: np.ndarray, seconds: float) -> list[tuple[int, Detection]]:
        """The faces of this frame as (track id, detection), by track id."""
        found = (
            self._follow_all(gray)
            if self.live and self.params["tracking"] and self.since_detect < self.params["redetect_every"]
            else None
        )
        if found is not None:
            self.since_detect += 1
        else:
            found = self._detect_and_associate(frame, gray, seconds)
            self.since_detect = 0
        found = self._merge_duplicates(found)
        for track, _ in found:
            track.last_seen = seconds
        self.misses = 0 if found else self.misses + 1
        self.lost = [t for t in self.lost if seconds - t.last_seen <= self.max_gap]
        return sorted(((t.track_id, d) for t, d in found), key=lambda pair: pair[0])

    def _follow_all(self, gray: np.ndarray) -> list[tuple[FaceTrack, Detection]] | None:
        """Every live track's face by template matching; None as soon as one is lost (then the detectors look)."""
        out = []
        for track in self.live:
            found = self.detector.follow(gray, track.follower) if track.follower is not None else None
            if found is None:
                return None
            track.box, track.landmarks = found.box, found.landmarks
            out.append((track, found))
        return out

    def _candidates(self, frame: np.ndarray, gray: np.ndarray) -> list[Detection]:
        """Every face the detectors find in this frame, one detection per face."""
        params, detector = self.params, self.detector
        found: list[Detection] = []
        # MTCNN on the whole frame on every detection frame while faces are being followed (a
        # second face that Viola-Jones misses is found too); in a run of frames without any
        # face, on every fallback_every-th frame only, as the face stage does
        if params["mtcnn_fallback"] and (self.live or self.misses % params["fallback_every"] == 0):
            found += detector.mtcnn_detect(frame)
        found += detector.viola_jones(gray)
        for track in self.live:
            if not any(box_iou(d.box, track.box) >= IOU_MIN for d in found):
                near = detector.viola_jones_near(gray, track.box)
                if near:
                    found.append(min(near, key=lambda d: _centre_distance_in_sides(d.box, track.box)))
        kept: list[
            Detection
        ] = []  # a later detection overlapping an earlier one is the same face (MTCNN's first: it has landmarks)
        for det in found:
            if all(box_iou(det.box, k.box) <= DUPLICATE_IOU for k in kept):
                kept.append(det)
        return kept

    def _detect_and_associate(
        self, frame: np.ndarray, gray: np.ndarray, seconds: float
    ) -> list[tuple[FaceTrack, Detection]]:
        candidates = self._candidates(frame, gray)
        pairs = sorted(
            ((box_iou(t.box, d.box), i, j) for i, t in enumerate(self.live) for j, d in enumerate(candidates)),
            reverse=True,
        )
        track_of: dict[int, FaceTrack] = {}
        used_tracks: set[int] = set()
        for overlap, i, j in pairs:
            if overlap < IOU_MIN:
                break
            if i in used_tracks or j in track_of:
                continue
            used_tracks.add(i)
            track_of[j] = self.live[i]
        self.lost += [t for i, t in enumerate(self.live) if i not in used_tracks]
        live = [t for i, t in enumerate(self.live) if i in used_tracks]
        unmatched = sorted(
            (j for j in range(len(candidates)) if j not in track_of), key=lambda j: float(candidates[j].box[0])
        )
        for j in unmatched:
            descriptor = appearance(frame, candidates[j].box)
            track = self._reidentify(candidates[j].box, descriptor, seconds)
            if track is None:
                track = FaceTrack(self.next_id, candidates[j].box, None, None, descriptor, seconds)
                self.next_id += 1
            live.append(track)
            track_of[j] = track
        out = []
        for j, det in enumerate(candidates):
            track = track_of[j]
            if self.params["align"] and det.landmarks is None:
                det.landmarks = self.detector.landmarks(frame, det.box)
            track.box, track.landmarks = det.box, det.landmarks
            track.follower = (
                self.detector.start_track(gray, det.box, det.landmarks) if self.params["tracking"] else None
            )
            descriptor = appearance(frame, det.box)
            if descriptor is not None:
                if track.descriptor is None:
                    track.descriptor = descriptor
                else:
                    track.descriptor = (1 - DESCRIPTOR_RATE) * track.descriptor + DESCRIPTOR_RATE * descriptor
            out.append((track, det))
        self.live = sorted(live, key=lambda t: t.track_id)
        return sorted(out, key=lambda pair: pair[0].track_id)

    def _reidentify(self, box: np.ndarray, descriptor: np.ndarray | None, seconds: float) -> FaceTrack | None:
        """The lost track (within max_gap) this face most looks like, removed from the lost list; None if none."""
        if descriptor is None:
            return None
        best, best_cost = None, np.inf
        for track in self.lost:
            if seconds - track.last_seen > self.max_gap or track.descriptor is None:
                continue
            ratio = max(float(box[2]), float(track.box[2])) / max(min(float(box[2]), float(track.box[2])), 1.0)
            difference = appearance_distance(descriptor, track.descriptor)
            if ratio > REID_MAX_SIZE_RATIO or difference > REID_MAX_DISTANCE:
                continue
            cost = difference + REID_DISTANCE_PENALTY * min(_centre_distance_in_sides(box, track.box), 10.0)
            if cost < best_cost:
                best, best_cost = track, cost
        if best is not None:
            self.lost.remove(best)
        return best

    def _merge_duplicates(self, found: list[tuple[FaceTrack, Detection]]) -> list[tuple[FaceTrack, Detection]]:
        """Drop the newer of two tracks on one face (templates can drift onto the same face)."""
        kept: list[tuple[FaceTrack, Detection]] = []
        for track, det in sorted(found, key=lambda pair: pair[0].track_id):
            if all(box_iou(det.box, other.box) <= DUPLICATE_IOU for _, other in kept):
                kept.append((track, det))
        if len(kept) < len(found):
            keep_ids = {t.track_id for t, _ in kept}
            self.live = [t for t in self.live if t.track_id in keep_ids]
        return kept
