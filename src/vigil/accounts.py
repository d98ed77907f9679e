"""Accounts: users with roles, browser sessions and API keys (the services; the API and CLI call these).

Passwords are hashed with argon2id (``argon2-cffi``). Session tokens and API keys are random; the
catalog keeps only their SHA-256, so a stolen database does not open a session or call the API.

The rules live here, once, for every front end:

- a password is at least :data:`MIN_PASSWORD` characters and hard to guess (``zxcvbn`` scores it at
  least :data:`MIN_PASSWORD_SCORE` of 4, knowing the user name), else :class:`InputError` says why;
- a password an admin sets (a new user's, a reset) must be changed at the next log-in;
- a password change ends the user's other sessions (a reset ends all of them);
- failed log-ins are throttled per account and per client (:class:`LoginThrottle`); failures for
  existing accounts are audited one by one, those for unknown names only as a periodic count;
- an API key belongs to a person (:attr:`Principal.person`): the user who made it or its
  ``--owner``; a key without an owner is a person of its own.
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
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import ConflictError, InputError, NotFoundError, VigilError
from vigil.gallery.galleries import get_gallery
from vigil.login_throttle import LoginThrottle, TooManyAttemptsError
from vigil.storage import audit
from vigil.storage.tables import ApiKey, Gallery, Role, User, WebSession

__all__ = ["LoginThrottle", "TooManyAttemptsError"]  # re-exported: the front ends meet them here

_hasher = PasswordHasher()

MIN_PASSWORD = 10
MAX_PASSWORD = 128
MIN_PASSWORD_SCORE = 3
"""zxcvbn's score (0 to 4) a password needs: 3 is "safely unguessable" against an online attack and
a slowed offline one; "aaaaaaaaaa", "password12" and ten spaces score 0 or 1, a phrase of a few words 4."""
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
    owner_id: int | None = None
    """For a key: the id of the user it belongs to (None: no owner)."""
    owner_key_id: int | None = None
    """For a key made by a key without an owner: that key's id."""

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def person(self) -> str:
        """Who is behind the call, for rules that count people (the two-person review): a user and
        every key they own are ``user:<id>``; a key without an owner is ``key:<id>``, and so are the
        keys it made."""
        if self.kind == "user":
            return f"user:{self.id}"
        if self.owner_id is not None:
            return f"user:{self.owner_id}"
        return f"key:{self.owner_key_id or self.id}"


class UserInfo(BaseModel):
    id: int
    username: str
    role: Role
    active: bool
    must_change_password: bool
    created_at: datetime
    last_login_at: datetime | None


class NewUserInfo(UserInfo):
    one_time_password: str | None
    """Shown once, when the admin set no password."""


class ApiKeyInfo(BaseModel):
    id: int
    name: str
    prefix: str
    role: Role
    gallery: str | None
    created_by: str | None
    owner: str | None = None
    """The user the key belongs to (None: the key is a person of its own)."""
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class NewApiKey(ApiKeyInfo):
    key: str
    """Shown once; only its hash is stored."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_password(password: str, *, username: str | None = None) -> None:
    """Refuse a password that is short or easy to guess, with zxcvbn's warning and suggestion."""
    if len(password) < MIN_PASSWORD:
        raise InputError(
            f"the password is too short ({len(password)} characters)",
            hint=f"use at least {MIN_PASSWORD} characters; a phrase of several words is best",
        )
    if len(password) > MAX_PASSWORD:
        raise InputError(
            f"the password is too long ({len(password)} characters)",
            hint=f"use at most {MAX_PASSWORD} characters",
        )
    from zxcvbn import zxcvbn  # type: ignore[import-untyped]  # 0.1 s to import: only when needed

    result = zxcvbn(password, user_inputs=[u for u in (username, "vigil") if u], max_length=MAX_PASSWORD)
    score = int(result["score"])
    if score < MIN_PASSWORD_SCORE:
        feedback = result.get("feedback") or {}
        warning = str(feedback.get("warning") or "").strip()
        suggestions = [str(x) for x in feedback.get("suggestions") or [] if x]
        reason = warning[:1].lower() + warning[1:].rstrip(".") if warning else "it would be guessed quickly"
        raise InputError(
            f"the password is too easy to guess: {reason} "
            f"(strength {score} of 4, at least {MIN_PASSWORD_SCORE} needed)",
            hint=" ".join(suggestions) or "use a phrase of several uncommon words",
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
    """A one-time password: 16 random URL-safe characters, drawn until :func:`check_password` passes."""
    while True:
        password = secrets.token_urlsafe(12)
        try:
            check_password(password)
        except InputError:
            continue
        return password


def create_user(
    app: App,
    username: str,
    role: Role,
    password: str,
    *,
    must_change_password: bool = False,
    by: str | None = None,
) -> UserInfo:
    """A user with ``password`` (checked by :func:`check_password`). Front ends call :func:`add_user`,
    which makes a password the admin chose a one-time one; this is for the first admin and seeding.
    With ``by`` (the actor) the creation is audited (``user_create``) in the same transaction."""
    username = _check_username(username)
    check_password(password, username=username)
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
        if by is not None:
            audit.append(
                s,
                by,
                "user_create",
                target_type="user",
                target_id=user.id,
                target_name=user.username,
                role=role.value,
            )
        return _user_info(user)


def add_user(app: App, username: str, role: Role, *, password: str | None = None, by: str) -> NewUserInfo:
    """An admin (actor ``by``) adds a user, audited (``user_create``) in the same transaction. Whether
    the admin chose the password or got a one-time one, the user must change it at the first log-in:
    only the user should know their password."""
    otp = None if password else generate_password()
    info = create_user(app, username, role, password or otp or "", must_change_password=True, by=by)
    return NewUserInfo(**info.model_dump(), one_time_password=otp)


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


def _get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user with id {user_id}")
    return user


def update_user(
    app: App, user_id: int, *, role: Role | None = None, active: bool | None = None, by: Principal
) -> UserInfo:
    """An admin ``by`` changes a user's role or disables the account; audited (``user_update``, the
    changes) in the same transaction."""
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
        changes = {"role": role.value if role else None, "active": active}
        audit.append(
            s,
            by.actor,
            "user_update",
            target_type="user",
            target_id=user_id,
            target_name=user.username,
            changes={k: v for k, v in changes.items() if v is not None},
        )
        return _user_info(user)


def reset_password(app: App, user_id: int, *, by: str, throttle: LoginThrottle | None = None) -> str:
    """A new one-time password for the user, who must change it at the next log-in; every session of
    the user ends, and (with the server's ``throttle``) so does a lock-out after failed log-ins.
    Audited (``password_reset``) in the same transaction."""
    password = generate_password()
    with app.db.session() as s:
        user = _get_user(s, user_id)
        user.password_hash = _hasher.hash(password)
        user.must_change_password = True
        ended = _end_sessions(s, user.id)
        username = user.username
        audit.append(
            s,
            by,
            "password_reset",
            target_type="user",
            target_id=user_id,
            target_name=username,
            sessions_ended=ended,
        )
    if throttle is not None:
        throttle.forget(username)
    return password


def change_password(app: App, user_id: int, old: str, new: str, *, keep_session: str | None = None) -> None:
    """The user changes their own password. Their other sessions end; ``keep_session`` (the token of
    the session that asked) stays open. Audited (``password_change``) in the same transaction."""
    with app.db.session() as s:
        user = _get_user(s, user_id)
        check_password(new, username=user.username)
        if old == new:
            raise InputError("the new password is the same as the old one", hint="choose a different one")
        if not _verify(user.password_hash, old):
            raise AuthError("the current password is wrong")
        user.password_hash = _hasher.hash(new)
        user.must_change_password = False
        ended = _end_sessions(s, user.id, keep=keep_session)
        audit.append(
            s,
            f"user:{user.username}",
            "password_change",
            target_type="user",
            target_id=user_id,
            target_name=user.username,
            sessions_ended=ended,
        )


def _end_sessions(s: Session, user_id: int, *, keep: str | None = None) -> int:
    """Delete the user's sessions but ``keep`` (a token); how many ended."""
    query = delete(WebSession).where(WebSession.user_id == user_id)
    if keep is not None:
        query = query.where(WebSession.token_sha256 != _sha(keep))
    return int(s.execute(query).rowcount or 0)  # type: ignore[attr-defined]


def _verify(hash_: str, password: str) -> bool:
    try:
        return _hasher.verify(hash_, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to verify against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def authenticate(
    app: App,
    username: str,
    password: str,
    *,
    client: str | None = None,
    throttle: LoginThrottle | None = None,
) -> UserInfo:
    """Check a log-in and audit it (``login``; ``login_failed`` for an existing account, with the
    client and the count of failures; for unknown names only a periodic ``login_failed_unknown`` count,
    never the name). With the server's ``throttle``, an attempt after too many failures is refused
    (:class:`TooManyAttemptsError`) without checking the password."""
    name = username.strip()[:200]
    if throttle is not None:
        throttle.attempt(name, client)
    known: tuple[int, str] | None = None
    info: UserInfo | None = None
    with app.db.session() as s:
        user = s.scalar(select(User).where(User.username == name))
        ok = _verify(user.password_hash if user else _DUMMY_HASH, password)
        if user is not None and ok and user.active:
            user.last_login_at = datetime.now(UTC)
            info = _user_info(user)
            audit.append(
                s, f"user:{user.username}", "login", target_type="user", target_id=user.id, client=client
            )
        elif user is not None:
            known = (user.id, user.username)
    if info is None:
        if known is not None:
            audit.record(
                app,
                "anonymous",
                "login_failed",
                target_type="user",
                target_id=known[0],
                target_name=known[1],
                client=client,
                failures=throttle.failures(name) if throttle else None,
            )
        elif throttle is not None and (due := throttle.unknown_failure(client)) is not None:
            audit.record(
                app,
                "anonymous",
                "login_failed_unknown",
                failures=due[0],
                clients=due[1],
                at_most_every_s=app.settings.login_unknown_audit_s,
            )
        raise AuthError("wrong user name or password, or the account is disabled")
    if throttle is not None:
        throttle.succeeded(name, client)
    return info


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


def _key_info(k: ApiKey, gallery: str | None, owner: str | None) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=k.id,
        name=k.name,
        prefix=k.prefix,
        role=k.role,
        gallery=gallery,
        created_by=k.created_by,
        owner=owner,
        created_at=k.created_at,
        last_used_at=k.last_used_at,
        revoked=k.revoked,
    )


def create_api_key(
    app: App,
    name: str,
    role: Role,
    *,
    gallery: str | None = None,
    by: Principal | None = None,
    owner: str | None = None,
    created_by: str | None = None,
) -> NewApiKey:
    """A new key. ``gallery`` binds it to one gallery (what CompreFace calls a face collection).

    The key belongs to a person: the caller ``by`` (a user, or the person behind the calling key), or,
    from the command line, the user named ``owner``. A key with neither is a person of its own.
    ``created_by`` (the actor, for display and the audit) defaults to ``by``'s. Audited
    (``key_create``) in the same transaction."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InputError("an API key needs a name of 1 to 100 characters", hint="e.g. double-take")
    if by is not None and owner is not None:
        raise InputError("a key made by a caller belongs to that caller", hint="leave out the owner")
    key = KEY_PREFIX + secrets.token_urlsafe(30)
    with app.db.session() as s:
        if s.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
            raise ConflictError(f"an API key named {name!r} already exists", hint="choose another name")
        gallery_id = None
        if gallery is not None:
            gallery_id = get_gallery(s, gallery).id
        owner_user_id, owner_key_id = None, None
        if by is not None:
            if by.kind == "user":
                owner_user_id = by.id
            elif by.owner_id is not None:
                owner_user_id = by.owner_id
            else:
                owner_key_id = by.owner_key_id or by.id
        elif owner is not None:
            user = s.scalar(select(User).where(User.username == owner))
            if user is None:
                raise NotFoundError(f"no user named {owner!r}", hint="see `vigil users list`")
            owner_user_id = user.id
        row = ApiKey(
            name=name,
            prefix=key[: len(KEY_PREFIX) + 4],
            key_sha256=_sha(key),
            role=role,
            gallery_id=gallery_id,
            created_by=created_by or (by.actor if by else None),
            owner_user_id=owner_user_id,
            owner_key_id=owner_key_id,
        )
        s.add(row)
        s.flush()
        owner_name = s.get(User, owner_user_id).username if owner_user_id else None  # type: ignore[union-attr]
        info = _key_info(row, gallery, owner_name)
        audit.append(
            s,
            row.created_by or audit.SYSTEM,
            "key_create",
            target_type="api_key",
            target_id=info.id,
            target_name=info.name,
            role=info.role.value,
            gallery=info.gallery,
            owner=info.owner,
        )
        return NewApiKey(**info.model_dump(), key=key)


def list_api_keys(app: App) -> list[ApiKeyInfo]:
    with app.db.session() as s:
        galleries = dict(s.execute(select(Gallery.id, Gallery.name)).all())
        users = dict(s.execute(select(User.id, User.username)).all())
        return [
            _key_info(
                k,
                galleries.get(k.gallery_id) if k.gallery_id else None,
                users.get(k.owner_user_id) if k.owner_user_id else None,
            )
            for k in s.scalars(select(ApiKey).order_by(ApiKey.name))
        ]


def revoke_api_key(app: App, key_id: int, *, actor: str = audit.SYSTEM) -> ApiKeyInfo:
    """Revoke a key; audited (``key_revoke``) in the same transaction."""
    with app.db.session() as s:
        row = s.get(ApiKey, key_id)
        if row is None:
            raise NotFoundError(f"no API key with id {key_id}")
        row.revoked = True
        info = _key_info(row, None, None)
        audit.append(s, actor, "key_revoke", target_type="api_key", target_id=key_id, target_name=info.name)
        return info


def key_principal(app: App, key: str) -> Principal | None:
    """The caller of a key; None for an unknown or revoked key, or one whose owner is disabled."""
    with app.db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_sha256 == _sha(key)))
        if row is None or row.revoked:
            return None
        if row.owner_user_id is not None:
            owner = s.get(User, row.owner_user_id)
            if owner is None or not owner.active:
                return None
        now = datetime.now(UTC)
        last = row.last_used_at
        if last is None or (last.replace(tzinfo=UTC) if last.tzinfo is None else last) < now - timedelta(
            minutes=1
        ):
            row.last_used_at = now
        return Principal(
            "key",
            row.id,
            row.name,
            row.role,
            gallery_id=row.gallery_id,
            owner_id=row.owner_user_id,
            owner_key_id=row.owner_key_id,
        )
