"""Fixtures for the fleet transport: a real nats-server with JetStream (``nats_server``)."""

from __future__ import annotations

from natsserver import nats_server

__all__ = ["nats_server"]
