"""Contact sheet of the evaluation presets: one LFW chip per row, clean / cctv / ir at
8, 16 and 32 px (each shown enlarged with nearest-neighbour so the pixels stay visible).

    python benchmarks/degradation_examples.py --out docs/degradation-presets.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from lrface.data.chips import aligned_chips
from lrface.data.degrade import PRESETS, EvalDegradation
from lrface.data.lfw import LFW

PEOPLE = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Serena_Williams/Serena_Williams_0001.jpg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/degradation-presets.png"))
    parser.add_argument("--lfw", default=None)
    args = parser.parse_args()
    lfw = LFW(args.lfw)
    chips = aligned_chips(lfw.root, PEOPLE, progress=False)
    tiles = []
    for row in range(len(chips)):
        cells = [chips.chips[row][::2, ::2]]  # 75 px thumbnail of the HR chip
        for preset in PRESETS:
            for size in (8, 16, 32):
                degrade = EvalDegradation(size, preset=preset)
                small = degrade(chips.chips[row : row + 1], chips.keys[row : row + 1])[0]
                cells.append(np.asarray(Image.fromarray(small).resize((75, 75), Image.NEAREST)))
        tiles.append(np.concatenate(cells, axis=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(tiles, axis=0)).save(args.out)
    print(f"columns: HR, then {', '.join(PRESETS)} at 8 / 16 / 32 px -> {args.out}")


if __name__ == "__main__":
    main()
