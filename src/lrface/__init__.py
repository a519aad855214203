"""lrface: low-resolution face recognition by transfer from a high-resolution teacher."""

from lrface.constants import __version__ as __version__
