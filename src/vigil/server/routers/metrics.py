"""Prometheus metrics: per-camera fps, frames, dropped frames, stage latency, alarms, worker restarts."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vigil.server.deps import AnyRole, ServerState, State, WholeServer

# Counts over every camera and gallery: no gallery-bound key reads them.
router = APIRouter(tags=["metrics"], dependencies=[WholeServer])

STATES = ("stopped", "starting", "running", "offline", "finished", "restarting", "failed")


class CameraCollector(Collector):
    def __init__(self, st: ServerState) -> None:
        self.st = st

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        sup = self.st.supervisor
        fps = GaugeMetricFamily("vigil_camera_fps", "Frames processed per second", labels=["camera"])
        frames = CounterMetricFamily(
            "vigil_camera_frames", "Frames processed by the current worker", labels=["camera"]
        )
        dropped = CounterMetricFamily(
            "vigil_camera_dropped_frames", "Frames dropped because processing fell behind", labels=["camera"]
        )
        alarms = CounterMetricFamily(
            "vigil_camera_alarms", "Alarms raised by the current worker", labels=["camera"]
        )
        restarts = CounterMetricFamily("vigil_worker_restarts", "Camera worker restarts", labels=["camera"])
        stage = GaugeMetricFamily(
            "vigil_camera_stage_latency_ms",
            "Mean milliseconds per frame in each stage",
            labels=["camera", "stage"],
        )
        alarm_latency = GaugeMetricFamily(
            "vigil_camera_alarm_latency_ms",
            "Alarm latency from capture to event",
            labels=["camera", "quantile"],
        )
        state = GaugeMetricFamily(
            "vigil_camera_state", "1 for the camera's current state", labels=["camera", "state"]
        )
        for name in sup.cameras():
            h = sup.health(name)
            fps.add_metric([name], h.fps)
            frames.add_metric([name], h.frames)
            dropped.add_metric([name], h.dropped)
            alarms.add_metric([name], h.alarms)
            restarts.add_metric([name], h.restarts)
            for s, ms in h.stage_ms_per_frame.items():
                stage.add_metric([name, s], ms)
            for q, key in (("0.5", "p50"), ("0.95", "p95")):
                if h.alarm_latency_ms and key in h.alarm_latency_ms:
                    alarm_latency.add_metric([name, q], h.alarm_latency_ms[key])
            for s in STATES:
                state.add_metric([name, s], 1.0 if h.state == s else 0.0)
        events = CounterMetricFamily("vigil_events", "Events published on the bus")
        events.add_metric([], self.st.bus.published)
        yield from (fps, frames, dropped, alarms, restarts, stage, alarm_latency, state, events)


@router.get(
    "/metrics",
    summary="Prometheus metrics (send an API key as a bearer token)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(st: State, _: AnyRole) -> Response:
    registry = st.extras.get("registry")
    if registry is None:
        registry = CollectorRegistry()
        registry.register(CameraCollector(st))
        st.extras["registry"] = registry
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")
