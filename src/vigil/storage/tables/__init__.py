"""Catalog tables (SQLAlchemy 2). The catalog is the source of truth; vector indexes are rebuilt from it.

One module per domain; import the tables from here (``from vigil.storage.tables import Gallery``).
"""

from vigil.storage.tables.accounts import ApiKey, Role, User, WebSession
from vigil.storage.tables.alarms import (
    AlarmKind,
    AlarmNegative,
    AlarmRecord,
    AlarmReview,
    AlarmState,
    ReviewAction,
)
from vigil.storage.tables.attendance import AttendanceMark
from vigil.storage.tables.base import AUTOINCREMENT, Base, BigId, UTCDateTime, utcnow
from vigil.storage.tables.cameras import Camera
from vigil.storage.tables.devices import Device, DeviceState
from vigil.storage.tables.galleries import Gallery, GalleryKind, Identity, Photo, Template
from vigil.storage.tables.governance import AuditEntry
from vigil.storage.tables.investigation import Cluster, ClusterState, CompareJob, Sighting
from vigil.storage.tables.models import (
    ActiveModel,
    ModelSwitch,
    ModelSwitchFailure,
    ModelSwitchGallery,
    SwitchState,
)
from vigil.storage.tables.notifications import DeadLetter, Webhook

__all__ = [
    "AUTOINCREMENT",
    "ActiveModel",
    "AlarmKind",
    "AlarmNegative",
    "AlarmRecord",
    "AlarmReview",
    "AlarmState",
    "ApiKey",
    "AttendanceMark",
    "AuditEntry",
    "Base",
    "BigId",
    "Camera",
    "Cluster",
    "ClusterState",
    "CompareJob",
    "DeadLetter",
    "Device",
    "DeviceState",
    "Gallery",
    "GalleryKind",
    "Identity",
    "ModelSwitch",
    "ModelSwitchFailure",
    "ModelSwitchGallery",
    "Photo",
    "ReviewAction",
    "Role",
    "Sighting",
    "SwitchState",
    "Template",
    "UTCDateTime",
    "User",
    "WebSession",
    "Webhook",
    "utcnow",
]
