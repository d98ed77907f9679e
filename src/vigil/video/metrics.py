"""Counters and per-stage latencies of one pipeline run (``vigil watch``'s summary, the server's metrics)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAGES = ("decode", "detect", "track", "embed", "match", "store", "annotate")


@dataclass
class Metrics:
    """Counters and per-stage latencies of one pipeline run."""

    frames: int = 0
    detected_frames: int = 0
    scans: dict[str, int] = field(default_factory=dict)
    """Detections by what they scanned: the whole frame, regions around the tracks, or coarser."""
    faces: int = 0
    embeddings: int = 0
    alarms: int = 0
    attendance_marks: int = 0
    tracks: int = 0
    stage_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    alarm_latency_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] += seconds

    def summary(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        lat = np.asarray(self.alarm_latency_ms) if self.alarm_latency_ms else None
        per_frame = {s: round(1000 * self.stage_s.get(s, 0.0) / max(self.frames, 1), 3) for s in STAGES}
        return {
            "frames": self.frames,
            "fps": round(self.frames / elapsed, 2),
            "seconds": round(elapsed, 3),
            "detected_frames": self.detected_frames,
            "scans": dict(self.scans),
            "faces": self.faces,
            "tracks": self.tracks,
            "embeddings": self.embeddings,
            "alarms": self.alarms,
            "attendance_marks": self.attendance_marks,
            "stage_ms_per_frame": per_frame,
            "alarm_latency_ms": None
            if lat is None
            else {
                "p50": round(float(np.percentile(lat, 50)), 1),
                "p95": round(float(np.percentile(lat, 95)), 1),
            },
        }
