"""Webhooks (admin only): register signed HTTP callbacks for bus events, test them, read dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from vigil.notify import webhooks as svc
from vigil.notify.webhooks import WebhookNotifier
from vigil.server.deps import Admin, Id, Offset, ServerState, State

router = APIRouter(prefix="/api/webhooks", tags=["notifications"])


class NewWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    """An http:// or https:// URL that receives a signed POST per event."""
    event_types: list[str] = Field(default_factory=lambda: ["alarm"])
    """Event types to deliver (any of ``vigil.events.schemas.EVENT_TYPES``: alarm, alarm_reviewed,
    camera_status, ...), or ["*"] for all."""
    secret: str | None = Field(default=None, min_length=16, max_length=200)
    """The HMAC signing secret; omit to have one generated (it is returned once)."""
    enabled: bool = True


class WebhookChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    event_types: list[str] | None = None


class TestDelivery(BaseModel):
    webhook_id: int
    delivery: str
    """The X-Vigil-Delivery id of the queued test event."""


def _notifier(st: ServerState) -> WebhookNotifier:
    notifier: WebhookNotifier = st.extras["notifiers"].webhooks
    return notifier


@router.get("", summary="List webhooks (never their secrets)")
def list_webhooks(st: State, _: Admin) -> list[svc.WebhookInfo]:
    return svc.list_webhooks(st.app)


@router.post("", status_code=201, summary="Register a webhook (its signing secret is shown once)")
def create_webhook(body: NewWebhook, st: State, me: Admin) -> svc.CreatedWebhook:
    created = svc.create_webhook(
        st.app, body.url, body.event_types, secret=body.secret, enabled=body.enabled, actor=me.actor
    )
    _notifier(st).invalidate()
    return created


@router.get("/dead-letters", summary="Notifications not delivered after every retry, newest first")
def dead_letters(
    st: State,
    _: Admin,
    channel: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> list[svc.DeadLetterInfo]:
    return svc.list_dead_letters(st.app, channel=channel, limit=limit, offset=offset)


@router.patch("/{webhook_id:id}", summary="Enable or disable a webhook, or change its event types")
def update_webhook(webhook_id: Id, body: WebhookChange, st: State, me: Admin) -> svc.WebhookInfo:
    info = svc.update_webhook(
        st.app, webhook_id, enabled=body.enabled, event_types=body.event_types, actor=me.actor
    )
    _notifier(st).invalidate()
    return info


@router.delete("/{webhook_id:id}", summary="Remove a webhook (its dead letters are kept)")
def delete_webhook(webhook_id: Id, st: State, me: Admin) -> svc.WebhookInfo:
    info = svc.delete_webhook(st.app, webhook_id, actor=me.actor)
    _notifier(st).invalidate()
    return info


@router.post("/{webhook_id:id}/test", status_code=202, summary="Send a test event to one webhook")
def test_webhook(webhook_id: Id, st: State, _: Admin) -> TestDelivery:
    """Queues ``{"type": "test", ...}`` for this webhook (enabled or not), signed and retried like any
    event; a failure ends in the dead letters."""
    return TestDelivery(webhook_id=webhook_id, delivery=_notifier(st).send_test(webhook_id))
