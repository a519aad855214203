"""False alarms of ``lrface watch`` on footage of nobody on the watch-list, from its outputs.

    lrface watch arcade-1080p.mp4 --gallery wl400.db --out out/watch-arcade-1080p  # and others
    python benchmarks/watch_false_alarms.py out/watch-arcade-1080p out/watch-arcade-540p ...

Every track of such footage should be "unknown": each named identity is a false alarm. Per
output folder (its ``events.jsonl``): the tracks, the false alarms, and the closest call (the
track whose pooled score came nearest its threshold, as score / threshold, and the margin
``score - threshold``: positive is an alarm). Prints a markdown table; ``--out`` also writes
it as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def summarize(folder: Path) -> dict:
    """Tracks, false alarms and the closest call of one ``lrface watch`` output folder."""
    events_file = folder / "events.jsonl"
    if not events_file.is_file():
        raise SystemExit(f"{folder}: no events.jsonl (not an lrface watch output folder)")
    events = []
    for number, line in enumerate(events_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{events_file}:{number}: not a JSON event ({exc.msg})") from None
    judged = [e for e in events if e.get("score") is not None and e.get("threshold") is not None]
    closest = max(judged, key=lambda e: e["score"] - e["threshold"], default=None)
    return {
        "folder": str(folder),
        "tracks": len(events),
        "false_alarms": sum(e["identity"] != "unknown" for e in events),
        "alarm_identities": sorted({e["identity"] for e in events if e["identity"] != "unknown"}),
        "closest": None
        if closest is None
        else {
            "track_id": closest["track_id"],
            "score": closest["score"],
            "threshold": closest["threshold"],
            "margin": round(closest["score"] - closest["threshold"], 4),
            "median_face_px": closest.get("median_face_px"),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", nargs="+", type=Path, help="lrface watch --out folders")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    rows = [summarize(folder) for folder in args.folders]
    print("| output | tracks | false alarms | closest: score / threshold (margin) |")
    print("|---|---|---|---|")
    for row in rows:
        c = row["closest"]
        closest = "" if c is None else f"{c['score']} / {c['threshold']} ({c['margin']:+.4f})"
        print(f"| {row['folder']} | {row['tracks']} | {row['false_alarms']} | {closest} |")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
