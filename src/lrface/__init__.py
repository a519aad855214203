"""lrface: low-resolution face recognition by transfer from a high-resolution teacher."""

__version__ = "0.1.0"
