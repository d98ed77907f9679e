"""Users and API keys (admin only)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from vigil import accounts
from vigil.server.deps import Admin, Id, State
from vigil.server.routers.auth import login_throttle
from vigil.storage.tables import Role

router = APIRouter(prefix="/api", tags=["users"])


class NewUser(BaseModel):
    username: str
    role: Role
    password: str | None = None
    """Omit to get a one-time password. Either way the user must change it at the first log-in."""


class UserChange(BaseModel):
    role: Role | None = None
    active: bool | None = None


class NewKey(BaseModel):
    name: str
    role: Role
    gallery: str | None = None
    """Bind the key to one gallery (the face collection of the CompreFace-compatible endpoints)."""
    # No owner field: a key belongs to whoever makes it, so one person cannot make keys that count as
    # someone else in the two-person review.


@router.get("/users", summary="List users")
def list_users(st: State, _: Admin) -> list[accounts.UserInfo]:
    return accounts.list_users(st.app)


@router.post(
    "/users", status_code=201, summary="Create a user (who must change the password at the first log-in)"
)
def create_user(body: NewUser, st: State, me: Admin) -> accounts.NewUserInfo:
    return accounts.add_user(st.app, body.username, body.role, password=body.password, by=me.actor)


@router.patch("/users/{user_id:id}", summary="Change a user's role or disable the account")
def update_user(user_id: Id, body: UserChange, st: State, me: Admin) -> accounts.UserInfo:
    return accounts.update_user(st.app, user_id, role=body.role, active=body.active, by=me)


@router.post("/users/{user_id:id}/reset-password", summary="Give a user a new one-time password")
def reset_password(user_id: Id, st: State, me: Admin) -> dict[str, str]:
    otp = accounts.reset_password(st.app, user_id, by=me.actor, throttle=login_throttle(st))
    return {"one_time_password": otp}


@router.get("/keys", summary="List API keys (never the keys themselves)")
def list_keys(st: State, _: Admin) -> list[accounts.ApiKeyInfo]:
    return accounts.list_api_keys(st.app)


@router.post("/keys", status_code=201, summary="Create an API key (shown once)")
def create_key(body: NewKey, st: State, me: Admin) -> accounts.NewApiKey:
    return accounts.create_api_key(st.app, body.name, body.role, gallery=body.gallery, by=me)


@router.delete("/keys/{key_id:id}", summary="Revoke an API key")
def revoke_key(key_id: Id, st: State, me: Admin) -> accounts.ApiKeyInfo:
    return accounts.revoke_api_key(st.app, key_id, actor=me.actor)
