"""MQTT notifications in the style of Frigate and Home Assistant (paho-mqtt 2.x).

Topics, under ``mqtt_topic_prefix`` (``vigil``):

    vigil/available          "online" once connected, retained; the broker sends "offline" (the
                             last will) if the server goes away, and a clean stop sends it too
    vigil/events             every event, JSON (its public form: no crops, no templates)
    vigil/alarms             alarm events, JSON
    vigil/<camera>/alarms    that camera's alarm events, JSON
    vigil/<camera>/status    retained: "online" / "offline" (camera_online / camera_offline) or the
                             worker state of camera_status events (starting, running, finished, ...)

Camera names are made safe for a topic level (``+``, ``#`` and ``/`` become ``_``). The client connects
in the background and reconnects by itself; a broker that is down never blocks or stops the server.
Messages published while disconnected are dropped and counted (:attr:`MqttNotifier.dropped`); the
retained camera statuses are sent again on every (re)connection.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from vigil.core.config import Settings
from vigil.core.errors import ConfigError
from vigil.events.schemas import AnyEvent, CameraStatus, public

log = logging.getLogger(__name__)

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
KEEPALIVE_S = 30
RECONNECT_MAX_S = 30
MAX_QUEUED = 1000
"""QoS 1 messages paho keeps for a connection being re-established; more are dropped."""
_UNSAFE = re.compile(r"[+#/\x00-\x1f\x7f]")


def topic_level(name: str) -> str:
    """``name`` as one MQTT topic level: wildcards (``+``, ``#``), ``/`` and control characters
    become ``_``; an empty name becomes ``_``.

    >>> topic_level("gate/north #2")
    'gate_north _2'
    """
    return _UNSAFE.sub("_", name) or "_"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: str
    retain: bool = False


def messages_for(prefix: str, event: AnyEvent) -> list[Message]:
    """The MQTT messages one bus event becomes (see the module docstring for the topics)."""
    body = json.dumps(public(event), separators=(",", ":"), ensure_ascii=False)
    out = [Message(f"{prefix}/events", body)]
    camera = getattr(event, "camera", None)
    cam = topic_level(str(camera)) if camera is not None else None
    if event.type == "alarm":
        out.append(Message(f"{prefix}/alarms", body))
        if cam is not None:
            out.append(Message(f"{prefix}/{cam}/alarms", body))
    if cam is not None:
        status = {"camera_online": "online", "camera_offline": "offline"}.get(event.type)
        if isinstance(event, CameraStatus) and event.state:
            status = event.state
        if status is not None:
            out.append(Message(f"{prefix}/{cam}/status", status, retain=True))
    return out


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://[user[:password]@]host[:port]`` (1883) or ``mqtts://...`` (TLS, 8883)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            port = -1
        if scheme not in SCHEMES or not parts.hostname or port == -1:
            raise ConfigError(
                f"MQTT URL {url!r} is not mqtt://host[:port] or mqtts://host[:port]",
                hint="set VIGIL_MQTT_URL, for example mqtt://127.0.0.1:1883",
            )
        return cls(
            host=parts.hostname,
            port=port or SCHEMES[scheme],
            tls=scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class MqttNotifier:
    """Publishes bus events to an MQTT broker. Use it as a bus listener; ``start`` and ``stop`` it."""

    def __init__(self, settings: Settings) -> None:
        if not settings.mqtt_url:
            raise ConfigError("no MQTT broker configured", hint="set VIGIL_MQTT_URL")
        self.broker = BrokerAddress.parse(settings.mqtt_url)
        prefix = settings.mqtt_topic_prefix.strip("/")
        if not prefix or "+" in prefix or "#" in prefix:
            raise ConfigError(
                f"MQTT topic prefix {settings.mqtt_topic_prefix!r} is empty or has a wildcard",
                hint="set VIGIL_MQTT_TOPIC_PREFIX, for example vigil",
            )
        self.prefix = prefix
        self.available_topic = f"{prefix}/available"
        self.connected = False
        self.published = 0
        self.dropped = 0
        """Messages not sent because the broker was unreachable (or paho's queue was full)."""
        self._dropped_reported = 0
        self._failing = False
        self._stopping = False
        self._status: dict[str, Message] = {}
        self._lock = threading.Lock()
        self._client: Any = None

    # lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (returns at once; a broker that is down is retried)."""
        if self._client is not None:
            return
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"vigil-{uuid.uuid4().hex[:12]}")
        client.will_set(self.available_topic, "offline", qos=1, retain=True)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set()
        client.reconnect_delay_set(1, RECONNECT_MAX_S)
        client.max_queued_messages_set(MAX_QUEUED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self._stopping = False
        self._client = client
        client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S)
        client.loop_start()
        log.info("MQTT: connecting to %s (topics under %s/)", self.broker, self.prefix)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say "offline", disconnect and stop the network thread (waits at most about ``timeout_s``)."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        if self.connected:
            try:
                client.publish(self.available_topic, "offline", qos=1, retain=True).wait_for_publish(
                    timeout=timeout_s / 2
                )
            except (RuntimeError, ValueError) as exc:
                log.warning("MQTT: could not say offline: %s", exc)
        client.disconnect()
        stopper = threading.Thread(target=client.loop_stop, name="vigil-mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(timeout_s)
        if stopper.is_alive():
            log.warning("MQTT: the network thread did not stop within %.0f s", timeout_s)
        self.connected = False
        log.info("MQTT: stopped (%d messages published, %d dropped)", self.published, self.dropped)

    # the bus side ----------------------------------------------------------------------------------
    def __call__(self, event: AnyEvent) -> None:
        """The bus listener: publish the event's messages (paho queues them; this does not block)."""
        for m in messages_for(self.prefix, event):
            if m.retain:
                with self._lock:
                    self._status[m.topic] = m
            self._publish(m)

    def _publish(self, m: Message) -> None:
        client = self._client
        if client is None or not self.connected:
            self._drop(m, "not connected")
            return
        from paho.mqtt.enums import MQTTErrorCode

        try:
            info = client.publish(m.topic, m.payload, qos=1, retain=m.retain)
        except ValueError as exc:
            self._drop(m, str(exc))
            return
        # NO_CONN: the connection just dropped; paho keeps the QoS 1 message for the reconnection.
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self.published += 1
        else:
            self._drop(m, f"paho error {info.rc}")

    def _drop(self, m: Message, why: str) -> None:
        self.dropped += 1
        if self.dropped - self._dropped_reported == 1:
            log.warning("MQTT: dropping messages for %s (%s), first: %s", self.broker, why, m.topic)

    # paho callbacks (on paho's network thread) -----------------------------------------------------
    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT: %s refused the connection: %s", self.broker, reason)
            return
        self.connected = True
        self._failing = False
        log.info("MQTT: connected to %s", self.broker)
        if self.dropped > self._dropped_reported:
            log.warning(
                "MQTT: %d message(s) dropped while disconnected", self.dropped - self._dropped_reported
            )
            self._dropped_reported = self.dropped
        client.publish(self.available_topic, "online", qos=1, retain=True)
        with self._lock:
            statuses = list(self._status.values())
        for m in statuses:
            client.publish(m.topic, m.payload, qos=1, retain=True)

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was = self.connected
        self.connected = False
        if was and not self._stopping:
            log.warning("MQTT: lost the connection to %s (%s); reconnecting", self.broker, reason)

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        if not self._failing:
            log.warning("MQTT: cannot reach the broker at %s; retrying in the background", self.broker)
        self._failing = True
