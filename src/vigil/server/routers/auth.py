"""Log in and out (browser sessions with a CSRF token), who am I, change my password."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from vigil import accounts
from vigil.governance import audit
from vigil.server.deps import SESSION_COOKIE, Me, State

router = APIRouter(prefix="/api/auth", tags=["auth"])


class Login(BaseModel):
    username: str
    password: str


class PasswordChange(BaseModel):
    current_password: str
    new_password: str


def _me(p: accounts.Principal) -> dict[str, Any]:
    return {
        "kind": p.kind,
        "name": p.name,
        "role": p.role.value,
        "must_change_password": p.must_change_password,
        "csrf_token": p.csrf_token,
    }


@router.post("/login", summary="Open a browser session (sets an HttpOnly cookie; returns the CSRF token)")
def login(body: Login, response: Response, st: State) -> dict[str, Any]:
    try:
        user = accounts.authenticate(st.app, body.username, body.password)
    except accounts.AuthError:
        audit.record(st.app, "anonymous", "login_failed", target_type="user", target_name=body.username[:100])
        raise
    audit.record(st.app, f"user:{user.username}", "login", target_type="user", target_id=user.id)
    token, csrf = accounts.open_session(st.app, user.id)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=st.app.settings.secure_cookies,
        max_age=int(st.app.settings.session_hours * 3600),
        path="/",
    )
    return {
        "kind": "user",
        "name": user.username,
        "role": user.role.value,
        "must_change_password": user.must_change_password,
        "csrf_token": csrf,
    }


@router.post("/logout", summary="Close the session")
def logout(request: Request, response: Response, st: State, me: Me) -> dict[str, str]:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        accounts.close_session(st.app, token)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"status": "logged out"}


@router.get("/me", summary="Who is calling, with the CSRF token of the session")
def me(me: Me) -> dict[str, Any]:
    return _me(me)


@router.post("/password", summary="Change my password (required after a one-time password)")
def change_password(body: PasswordChange, st: State, me: Me) -> dict[str, str]:
    if me.kind != "user":
        raise accounts.PermissionDeniedError("API keys have no password")
    accounts.change_password(st.app, me.id, body.current_password, body.new_password)
    return {"status": "password changed"}
