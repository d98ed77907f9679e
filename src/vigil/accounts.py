"""Accounts: users with roles, browser sessions and API keys (the services; the API and CLI call these).

Passwords are hashed with argon2id (``argon2-cffi``). Session tokens and API keys are random; the
catalog keeps only their SHA-256, so a stolen database does not open a session or call the API.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel
from sqlalchemy import delete, select

from vigil.app import App
from vigil.core.errors import ConflictError, InputError, NotFoundError, VigilError
from vigil.gallery.models import ApiKey, Gallery, Role, User, WebSession

_hasher = PasswordHasher()

MIN_PASSWORD = 10
KEY_PREFIX = "vgl_"


class AuthError(VigilError):
    """Missing or wrong credentials (HTTP 401)."""

    title = "not authenticated"
    exit_code = 10


class PermissionDeniedError(VigilError):
    """Authenticated, but the role may not do this (HTTP 403)."""

    title = "permission denied"
    exit_code = 7


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (browser session or CLI) or an API key."""

    kind: str  # "user" | "key"
    id: int
    name: str
    role: Role
    gallery_id: int | None = None
    must_change_password: bool = False
    csrf_token: str | None = None

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"


class UserInfo(BaseModel):
    id: int
    username: str
    role: Role
    active: bool
    must_change_password: bool
    created_at: datetime
    last_login_at: datetime | None


class ApiKeyInfo(BaseModel):
    id: int
    name: str
    prefix: str
    role: Role
    gallery: str | None
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class NewApiKey(ApiKeyInfo):
    key: str
    """Shown once; only its hash is stored."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InputError(
            f"the password is too short ({len(password)} characters)",
            hint=f"use at least {MIN_PASSWORD} characters; a phrase of several words is best",
        )


def _check_username(username: str) -> str:
    username = username.strip()
    if not username or len(username) > 100 or any(c.isspace() for c in username):
        raise InputError(
            f"invalid user name {username!r}", hint="1 to 100 characters, no spaces (e.g. j.smith)"
        )
    return username


def _user_info(u: User) -> UserInfo:
    return UserInfo(
        id=u.id,
        username=u.username,
        role=u.role,
        active=u.active,
        must_change_password=u.must_change_password,
        created_at=u.created_at,
        last_login_at=u.last_login_at,
    )


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def create_user(
    app: App, username: str, role: Role, password: str, *, must_change_password: bool = False
) -> UserInfo:
    username = _check_username(username)
    _check_password(password)
    with app.db.session() as s:
        if s.scalar(select(User.id).where(User.username == username)) is not None:
            raise ConflictError(f"a user named {username!r} already exists", hint="choose another name")
        user = User(
            username=username,
            role=role,
            password_hash=_hasher.hash(password),
            must_change_password=must_change_password,
        )
        s.add(user)
        s.flush()
        return _user_info(user)


def ensure_admin(app: App) -> str | None:
    """On the first run (no user at all) create ``admin`` with a one-time password, and return it."""
    with app.db.session() as s:
        if s.scalar(select(User.id).limit(1)) is not None:
            return None
    password = generate_password()
    create_user(app, "admin", Role.admin, password, must_change_password=True)
    return password


def list_users(app: App) -> list[UserInfo]:
    with app.db.session() as s:
        return [_user_info(u) for u in s.scalars(select(User).order_by(User.username))]


def _get_user(app_session: object, user_id: int) -> User:
    from sqlalchemy.orm import Session

    assert isinstance(app_session, Session)
    user = app_session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user with id {user_id}")
    return user


def update_user(
    app: App, user_id: int, *, role: Role | None = None, active: bool | None = None, by: Principal
) -> UserInfo:
    with app.db.session() as s:
        user = _get_user(s, user_id)
        if user.id == by.id and by.kind == "user" and (active is False or (role and role != Role.admin)):
            raise ConflictError("you cannot demote or deactivate yourself", hint="ask another admin")
        if role is not None:
            user.role = role
        if active is not None:
            user.active = active
            if not active:
                s.execute(delete(WebSession).where(WebSession.user_id == user.id))
        return _user_info(user)


def reset_password(app: App, user_id: int) -> str:
    """A new one-time password for the user (who must change it at the next log-in)."""
    password = generate_password()
    with app.db.session() as s:
        user = _get_user(s, user_id)
        user.password_hash = _hasher.hash(password)
        user.must_change_password = True
        s.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return password


def change_password(app: App, user_id: int, old: str, new: str) -> None:
    _check_password(new)
    if old == new:
        raise InputError("the new password is the same as the old one", hint="choose a different one")
    with app.db.session() as s:
        user = _get_user(s, user_id)
        if not _verify(user.password_hash, old):
            raise AuthError("the current password is wrong")
        user.password_hash = _hasher.hash(new)
        user.must_change_password = False


def _verify(hash_: str, password: str) -> bool:
    try:
        return _hasher.verify(hash_, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to verify against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def authenticate(app: App, username: str, password: str) -> UserInfo:
    with app.db.session() as s:
        user = s.scalar(select(User).where(User.username == username.strip()))
        ok = _verify(user.password_hash if user else _DUMMY_HASH, password)
        if user is None or not ok or not user.active:
            raise AuthError("wrong user name or password, or the account is disabled")
        user.last_login_at = datetime.now(UTC)
        return _user_info(user)


def open_session(app: App, user_id: int) -> tuple[str, str]:
    """A new browser session: (token for the cookie, CSRF token for the page)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    with app.db.session() as s:
        s.execute(delete(WebSession).where(WebSession.expires_at < now))
        s.add(
            WebSession(
                token_sha256=_sha(token),
                user_id=user_id,
                csrf_token=csrf,
                expires_at=now + timedelta(hours=app.settings.session_hours),
            )
        )
    return token, csrf


def close_session(app: App, token: str) -> None:
    with app.db.session() as s:
        s.execute(delete(WebSession).where(WebSession.token_sha256 == _sha(token)))


def session_principal(app: App, token: str) -> Principal | None:
    with app.db.session() as s:
        row = s.get(WebSession, _sha(token))
        if row is None:
            return None
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        if expires < datetime.now(UTC):
            s.delete(row)
            return None
        user = s.get(User, row.user_id)
        if user is None or not user.active:
            return None
        return Principal(
            "user",
            user.id,
            user.username,
            user.role,
            must_change_password=user.must_change_password,
            csrf_token=row.csrf_token,
        )


def user_principal(app: App, username: str) -> Principal:
    """The principal of a local user, for CLI commands run on the server machine."""
    with app.db.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFoundError(f"no user named {username!r}", hint="see `vigil users list`")
        return Principal("user", user.id, user.username, user.role)


def _key_info(k: ApiKey, gallery: str | None) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=k.id,
        name=k.name,
        prefix=k.prefix,
        role=k.role,
        gallery=gallery,
        created_by=k.created_by,
        created_at=k.created_at,
        last_used_at=k.last_used_at,
        revoked=k.revoked,
    )


def create_api_key(
    app: App, name: str, role: Role, *, gallery: str | None = None, created_by: str | None = None
) -> NewApiKey:
    """A new key. ``gallery`` binds it to one gallery (what CompreFace calls a face collection)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InputError("an API key needs a name of 1 to 100 characters", hint="e.g. double-take")
    key = KEY_PREFIX + secrets.token_urlsafe(30)
    with app.db.session() as s:
        if s.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
            raise ConflictError(f"an API key named {name!r} already exists", hint="choose another name")
        gallery_id = None
        if gallery is not None:
            from vigil.gallery.galleries import get_gallery

            gallery_id = get_gallery(s, gallery).id
        row = ApiKey(
            name=name,
            prefix=key[: len(KEY_PREFIX) + 4],
            key_sha256=_sha(key),
            role=role,
            gallery_id=gallery_id,
            created_by=created_by,
        )
        s.add(row)
        s.flush()
        return NewApiKey(**_key_info(row, gallery).model_dump(), key=key)


def list_api_keys(app: App) -> list[ApiKeyInfo]:
    with app.db.session() as s:
        names = dict(s.execute(select(Gallery.id, Gallery.name)).all())
        return [
            _key_info(k, names.get(k.gallery_id) if k.gallery_id else None)
            for k in s.scalars(select(ApiKey).order_by(ApiKey.name))
        ]


def revoke_api_key(app: App, key_id: int) -> ApiKeyInfo:
    with app.db.session() as s:
        row = s.get(ApiKey, key_id)
        if row is None:
            raise NotFoundError(f"no API key with id {key_id}")
        row.revoked = True
        return _key_info(row, None)


def key_principal(app: App, key: str) -> Principal | None:
    with app.db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_sha256 == _sha(key)))
        if row is None or row.revoked:
            return None
        now = datetime.now(UTC)
        last = row.last_used_at
        if last is None or (last.replace(tzinfo=UTC) if last.tzinfo is None else last) < now - timedelta(
            minutes=1
        ):
            row.last_used_at = now
        return Principal("key", row.id, row.name, row.role, gallery_id=row.gallery_id)
