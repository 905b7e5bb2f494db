"""Race-session routes: /live/sessions (API), /live/sessions/{id}/stream (server-sent events) and
/live/{id} (the race view, plain HTML + JS from server/live/static).

Writing (creating a session, posting laps) needs the API key like /predict; reading the field's
state, the stream and the page do not, so a pit-wall screen can show them (docs/live.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi import Path as Path_
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from pydantic import ValidationError

from server.deps import ApiKeyGuard
from server.live.schemas import (
    SESSION_ID_PATTERN,
    FieldState,
    LapAccepted,
    LivePost,
    SessionCreate,
    SessionInfo,
    StoredLap,
)
from server.live.service import LiveService
from server.schemas import ErrorResponse

STATIC_DIR = Path(__file__).parent / "static"
ASSETS = {"live.js": "text/javascript", "live.css": "text/css"}

router = APIRouter(prefix="/live", tags=["live"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such session."},
    409: {"model": ErrorResponse, "description": "Contradicts what the session holds (names car and lap)."},
    422: {"model": ErrorResponse, "description": "Bad lap or session: the message names car, lap and field."},
}


def get_live(request: Request) -> LiveService:
    service: LiveService = request.app.state.live
    return service


LiveDep = Annotated[LiveService, Depends(get_live)]


@router.post(
    "/sessions",
    response_model=SessionInfo,
    status_code=status.HTTP_201_CREATED,
    dependencies=[ApiKeyGuard],
    responses=_ERRORS,
)
async def create_session(body: SessionCreate, live: LiveDep) -> SessionInfo:
    """Open a race session (or get the existing one with the same id, circuit, laps and fuel)."""
    return await live.create(body)


@router.get("/sessions", response_model=list[str])
async def list_sessions(live: LiveDep) -> list[str]:
    return await live.session_ids()


def _lap_errors(body: bytes, exc: ValidationError) -> RequestValidationError:
    """The schema's errors, each message naming the car and lap when the body says which."""
    try:
        raw = json.loads(body)
    except ValueError:
        raw = None
    car = raw.get("car") if isinstance(raw, dict) else None
    lap = raw.get("lap_number") if isinstance(raw, dict) else None
    prefix = f"car {car}, lap {lap}: " if isinstance(car, str) and isinstance(lap, int) else ""
    return RequestValidationError(
        [
            {"loc": ("body", *e["loc"]), "msg": prefix + e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False)
        ]
    )


@router.post(
    "/sessions/{session_id}/laps",
    response_model=LapAccepted,
    dependencies=[ApiKeyGuard],
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LivePost"}}},
        }
    },
)
async def post_lap(session_id: str, request: Request, live: LiveDep) -> Response:
    """One completed lap of one car (LivePost). Stored once (a repeat of a stored lap changes nothing
    and says `duplicate`), then every car whose prediction is due is predicted; the answer is the
    car's row. The body is parsed here so that every error names the car and lap."""
    body = await request.body()
    try:
        post = LivePost.model_validate_json(body)
    except ValidationError as exc:
        await live.count_refused(session_id)
        raise _lap_errors(body, exc) from None
    accepted = await live.ingest(session_id, post, str(request.state.request_id))
    return Response(accepted.model_dump_json(), media_type="application/json")


@router.get("/sessions/{session_id}", response_model=FieldState, responses=_ERRORS)
async def field_state(session_id: str, live: LiveDep) -> Response:
    """The whole field's latest state, in race order."""
    session = await live.session(session_id)
    return Response(live.state(session).model_dump_json(), media_type="application/json")


@router.get("/sessions/{session_id}/laps", response_model=list[StoredLap], responses=_ERRORS)
async def stored_laps(session_id: str, live: LiveDep) -> list[StoredLap]:
    """Every stored lap (car, lap number, sequence number) in the order it was stored."""
    session = await live.session(session_id)
    return list(session.lap_seqs)


@router.get(
    "/sessions/{session_id}/stream",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "state, then cars events."},
        **_ERRORS,
    },
)
async def stream(session_id: str, live: LiveDep) -> StreamingResponse:
    """Server-sent events: `state` (the field) at once, then `cars` (rows that changed) as laps come."""
    await live.session(session_id)  # 404 before the stream starts
    return StreamingResponse(
        live.events(session_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no asset {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


@router.get("/{session_id}", response_class=HTMLResponse, responses=_ERRORS)
async def race_view(
    session_id: Annotated[str, Path_(pattern=SESSION_ID_PATTERN)], live: LiveDep
) -> HTMLResponse:
    """The race view of a session (updates itself from the stream)."""
    await live.session(session_id)
    return HTMLResponse((STATIC_DIR / "live.html").read_text(), headers={"Cache-Control": "no-cache"})
