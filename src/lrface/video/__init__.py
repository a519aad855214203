"""Faces in video: frame sources, tracking, per-track aggregation and watch-list decisions.

``sources`` reads frames (video file, folder of frames, camera or stream URL), ``tracking``
links detections into tracks (norfair), ``aggregate`` pools a track's embeddings into one,
``decide`` turns it into an identity or *unknown*, ``watcher.FaceWatcher`` runs the loop and
yields one event per finished track, ``outputs`` writes them (JSONL, CSV, thumbnails, video).
"""
