"""Log in and out (browser sessions with a CSRF token), who am I, change my password."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from vigil import accounts
from vigil.server.deps import Me, ServerState, State
from vigil.server.limits import SESSION_COOKIE
from vigil.server.problems import PROBLEM, problem

router = APIRouter(prefix="/api/auth", tags=["auth"])


class Login(BaseModel):
    username: str = Field(max_length=200)
    password: str = Field(max_length=1000)


class Session(BaseModel):
    kind: str
    name: str
    role: str
    must_change_password: bool
    csrf_token: str | None


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


_making = threading.Lock()


def login_throttle(st: ServerState) -> accounts.LoginThrottle:
    """The server's one log-in throttle (made at the first use)."""
    with _making:
        found = st.extras.get("login_throttle")
        if not isinstance(found, accounts.LoginThrottle):
            found = accounts.LoginThrottle(st.app.settings)
            st.extras["login_throttle"] = found
        return found


TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many failed log-ins: wait `Retry-After` seconds", "content": {PROBLEM: {}}}
}


@router.post(
    "/login",
    summary="Open a browser session (sets an HttpOnly cookie; returns the CSRF token)",
    response_model=Session,
    responses=TOO_MANY,
)
def login(body: Login, request: Request, response: Response, st: State) -> Session | JSONResponse:
    client = request.client.host if request.client else None
    try:
        user = accounts.authenticate(
            st.app, body.username, body.password, client=client, throttle=login_throttle(st)
        )
    except accounts.TooManyAttemptsError as e:
        refused = problem(429, e.title, e.message, hint=e.hint, instance=request.url.path)
        refused.headers["Retry-After"] = str(e.retry_after_s)
        return refused
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
    return Session(
        kind="user",
        name=user.username,
        role=user.role.value,
        must_change_password=user.must_change_password,
        csrf_token=csrf,
    )


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


@router.post(
    "/password",
    summary="Change my password (required after a one-time password); my other sessions end",
)
def change_password(body: PasswordChange, request: Request, st: State, me: Me) -> dict[str, str]:
    if me.kind != "user":
        raise accounts.PermissionDeniedError("API keys have no password")
    accounts.change_password(
        st.app,
        me.id,
        body.current_password,
        body.new_password,
        keep_session=request.cookies.get(SESSION_COOKIE),
    )
    return {"status": "password changed"}
