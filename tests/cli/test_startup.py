"""``lrface --help`` (and any command's argument parsing) must not import the heavy libraries:
each command imports what it needs when it runs."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "numpy", "PIL", "cv2", "yaml", "faiss", "dlib", "safetensors", "matplotlib")


def test_importing_the_cli_imports_no_heavy_library():
    code = (
        "import json, sys; import lrface.cli; "
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []
