"""Face extraction: Viola-Jones + template tracking, MTCNN as the fallback, aligned 100x100 crops.

As in the paper's preprocessing, OpenCV's Viola-Jones detector finds the face and
initialises a tracker; where both fail, facenet-pytorch's MTCNN (weights bundled in the
package, nothing downloaded) re-examines the frame. Per frame of a clip:

1. **track**: while a track is live, the face is followed by normalised cross-correlation
   of the last detected face (a small template) inside a window around the last box
   (near the last position first, the whole window when that is not conclusive). A
   peak below ``track_min_score`` loses the track.
2. **verify / re-detect**: every ``redetect_every`` frames, and whenever the track is lost,
   detectors run. A live track is verified on most of these frames by ONet (MTCNN's
   landmark network, which also scores whether a box holds a face) on the tracked box:
   when it sees a face there, the track is confirmed, takes ONet's fresh landmarks and a
   new template. On every ``verify_vj_every``-th verification, and whenever ONet sees no
   face, Viola-Jones re-detects the face in a tight window around where the tracker puts
   it (:data:`VERIFY_WINDOW`); when that finds nothing, or the track is lost: Viola-Jones
   in the window around the last face, MTCNN in that window, then Viola-Jones and MTCNN
   on the whole frame (so a face that jumps is found again).
   During a run of frames without any face, the whole-frame passes run only every
   ``fallback_every`` frames: they are the expensive part and most such frames hold no
   face at all.
3. **landmarks**: MTCNN returns its 5 points (eyes, nose, mouth corners); for a
   Viola-Jones face a single pass of MTCNN's landmark network (ONet) on the face box
   gives the same 5 points (on a CPU, ONet runs in OpenCV's dnn module: ``onet_runtime``).
   A tracked face carries the points of the detection or check that last gave them,
   moved with the box.
4. **crop**: with ``align`` on, the frame is rotated about the eye midpoint so that the
   eyes are level, and a square of side ``(1 + 2 margin)`` face-box sides is cut with the
   eyes centred horizontally at ``eye_line`` of its height, then resized to 100x100.
   Without landmarks (or with ``align`` off) the crop is the unaligned square around the
   box; the store's per-face ``aligned`` flag and the QC's ``faces_aligned`` record which.

Frames are decoded and processed as a stream (a thread decodes a few frames ahead of the
one being worked on, :func:`videmotion.video.read_ahead`), so peak memory does not grow
with clip length; only the 100x100 crops and per-face provenance are kept.

When a frame holds several faces, the one kept is the one nearest the previous kept
face (the "track" rule); on the first face of a clip it is the largest (the "largest"
rule). The rule used is counted per clip for the QC table. :class:`FaceFollower` holds
this one-face rule; ``videmotion predict --track largest`` runs it too, while
``--track all`` follows every face with :mod:`videmotion.tracks`.

The package's modules, along those seams:

- :mod:`~videmotion.faces.detector`: :class:`FaceDetector` (Viola-Jones, template tracking,
  MTCNN, ONet landmarks on a box), :class:`Detection`, :class:`Track`;
- :mod:`~videmotion.faces.onet`: the ONet landmark runtime (torch or OpenCV's dnn module);
- :mod:`~videmotion.faces.align`: alignment and cropping (step 4 above);
- :mod:`~videmotion.faces.clip`: the per-clip loop (:class:`FaceFollower`, :func:`extract_clip`);
- :mod:`~videmotion.faces.qc`: the QC row (:class:`ClipQC`), the quarantine reasons and the
  QC over a corpus.
"""

from __future__ import annotations

from ..config import face_params
from .align import align_face, alignment_matrix, crop_face, eye_roll, face_crop, plausible_landmarks
from .clip import NO_LANDMARKS, FaceFollower, choose_face, detect_frame, extract_clip
from .detector import (
    NEAR_VJ_FACE_PX,
    TRACK_LOCAL_SHIFT,
    VERIFY_WINDOW,
    Detection,
    FaceDetector,
    Track,
)

# the detector's private helpers, which tests/test_faces_fast_paths.py checks through this package
from .detector import _downscaled_part as _downscaled_part
from .detector import _resize as _resize
from .detector import _track_scale as _track_scale
from .detector import _window as _window
from .onet import ONET_OUTPUTS, landmark_net, onet_forward, onet_runtime_for
from .qc import QUARANTINE_REASONS, ClipQC, excluded_by_split, excluded_fraction_error

# The face stage's parameters: the config schema's `faces` section (where each key is
# documented), normalised by one function, never copied.
DEFAULT_FACE_PARAMS: dict = face_params()

__all__ = [
    "DEFAULT_FACE_PARAMS",
    "NEAR_VJ_FACE_PX",
    "NO_LANDMARKS",
    "ONET_OUTPUTS",
    "QUARANTINE_REASONS",
    "TRACK_LOCAL_SHIFT",
    "VERIFY_WINDOW",
    "ClipQC",
    "Detection",
    "FaceDetector",
    "FaceFollower",
    "Track",
    "align_face",
    "alignment_matrix",
    "choose_face",
    "crop_face",
    "detect_frame",
    "excluded_by_split",
    "excluded_fraction_error",
    "extract_clip",
    "eye_roll",
    "face_crop",
    "face_params",
    "landmark_net",
    "onet_forward",
    "onet_runtime_for",
    "plausible_landmarks",
]
