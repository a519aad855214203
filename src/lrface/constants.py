"""The ground floor: constants every layer may use, in a module that imports nothing (from
lrface or anywhere), so no package reaches up or sideways for them.

Chip geometry: lrface's aligned chip is dlib's ``get_face_chip`` (150 px, padding 0.25), in
which the eye centres are ``EYE_DISTANCE_AT_150`` px apart (measured with dlib's 5-point
model), so an ``s``-px chip has an inter-eye distance of ``s * 49.5 / 150``.
"""

__version__ = "0.1.0"

CHIP_SIZE = 150
"""Side of the aligned full-resolution chip, px; a chip this size or larger is "full size"."""
EYE_DISTANCE_AT_150 = 49.5
"""Inter-eye distance in the 150 px chip, px."""

DEFAULT_TEACHER = "dlib-resnet-torch"
"""The teacher (dlib's ResNet, PyTorch port): the gallery encoder of every command."""
DEFAULT_STUDENT = "lrface-lr-v2"
"""The shipped student every command routes small faces to unless told otherwise."""
DEFAULT_SIZE_CUTOFF = 16.0
"""Faces narrower than this (px) go to a student that states no cutoff of its own. A shipped
student carries its own in student.json, chosen from its View 2 figures (lrface-lr-v2: 20 px;
why, in docs/lrface-lr-v2.md); 16 px suits a student alone such as lrface-lr-v1 (its card:
docs/lrface-lr-v1.md). A detected face of width w gives a chip of about 1.13 w px."""

TEMPLATE_FLIP = True
"""Enrolled templates are the teacher's embedding of the face averaged with the mirrored
face's (paid once per enrolled photo). On the open-set protocol at full size this alone cut
FNIR at FPIR 1% from 26.2% to 25.0% with AS-norm (docs/openset.md); calibrations and cohorts
are set for such templates. Probes: ``SEARCH_PROBE_FLIP``."""

SEARCH_PROBE_FLIP = True
"""A still image searched against a watch-list (``lrface gallery search``, ``/api/search``,
``Watchlist.search``) has each face the teacher serves averaged with its mirror image, as
templates are; faces a student serves, video frames and ``verify`` stay single-pass. The
teacher's open-set thresholds are set that way (docs/openset.md)."""

LONG_TRACK_FACES = 16
"""A video track pooled from at least this many faces must also clear the *long-track*
threshold of its track calibration where the file has one (``"openset_long"``, set on
whole-clip tracks alone; the higher of the two applies). Long tracks (a person walking the
whole way past the camera) score higher against everyone than short ones, so thresholds set
mostly on short tracks let too many strangers' long tracks through (docs/openset.md). The
calibration's size-bin tracks pool about 8 faces, its whole-clip tracks about 26 of 32
frames: this count sits between them."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
"""File suffixes read as images (identity folders, unlabelled folders, folders of frames)."""
