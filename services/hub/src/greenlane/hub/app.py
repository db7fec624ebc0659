"""The hub's HTTP and WebSocket edge: snapshot, one car, the live feed, the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import re
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from greenlane.core.auth import MAP_READ, AuthError, Principal, presented_token
from greenlane.core.authenticator import build_authenticator
from greenlane.core.events import CAR_ID_PATTERN
from greenlane.core.http import (
    ProblemError,
    authenticate,
    problem,
    problem_handler,
    request_certificate,
)
from greenlane.core.telemetry import probes_app
from greenlane.hub.frames import encode_error
from greenlane.hub.hub import Frame, Hub
from greenlane.hub.service import HubService, web_dir

log = logging.getLogger(__name__)

MAX_SEQ: Final = 2**53 - 1  # what a browser's number holds exactly
EPOCH_PATTERN: Final = re.compile(r"[0-9a-f]{1,64}")
WS_PARAMS: Final = frozenset({"since", "epoch"})
# Close codes (4000-4999 are the application's): the reason names the field at fault.
CLOSE_BAD_REQUEST: Final = 4400
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_TOO_SLOW: Final = 4408
CLOSE_FULL: Final = 1013  # try again later
CLOSE_RESTART: Final = 1012  # the hub is stopping: reconnect (with since) in a moment

NOT_BUILT_PAGE: Final = """<!doctype html><meta charset="utf-8"><title>GreenLane hub</title>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>The dashboard is not built</h1>
<p>The hub is running (its API is at <code>/api/snapshot</code> and <code>/ws</code>), but
the web page's assets are missing from <code>{where}</code>.</p>
<p>Build them with Node.js 20 or later: <code>make web</code> (or <code>make setup</code>),
then reload this page.</p>"""


class ParameterError(Exception):
    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(detail)
        self.parameter = parameter
        self.detail = detail


def parse_ws_params(params: dict[str, list[str]]) -> tuple[int | None, str | None]:
    """`since` (a sequence number) and `epoch` (the hub instance) of a WebSocket URL."""
    unknown = sorted(set(params) - WS_PARAMS)
    if unknown:
        raise ParameterError(unknown[0][:64], f"unknown query parameter {unknown[0][:64]!r}")
    for name, values in params.items():
        if len(values) > 1:
            raise ParameterError(name, f"{name}: given more than once")
    since = None
    if "since" in params:
        raw = params["since"][0]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 16 or int(raw) > MAX_SEQ:
            raise ParameterError("since", "since: must be a sequence number (0 to 2^53-1)")
        since = int(raw)
    epoch = None
    if "epoch" in params:
        epoch = params["epoch"][0]
        if not EPOCH_PATTERN.fullmatch(epoch):
            raise ParameterError("epoch", "epoch: must be the hex id a snapshot gave")
    return since, epoch


def create_app(service: HubService) -> Starlette:
    settings = service.settings
    authenticator = build_authenticator(settings)
    assets = web_dir(settings)

    def view(principal: Principal) -> str | None:
        """Whose objects the caller sees: its fleet's, or (None) every fleet's."""
        return None if principal.operator else principal.fleet

    def hub() -> Hub:
        if service.hub is None:
            raise HTTPException(503, "the hub is starting")
        return service.hub

    async def index(_: Request) -> Response:
        page = assets / "index.html"
        headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        if page.is_file():
            return HTMLResponse(page.read_text(encoding="utf-8"), headers=headers)
        return HTMLResponse(NOT_BUILT_PAGE.format(where=html.escape(str(assets))), headers=headers)

    async def config(_: Request) -> Response:
        # Needs no token: the page reads it before it has one; nothing in it is secret.
        return JSONResponse(
            {
                "map_style_url": settings.map_style_url or None,
                "frame_ms": settings.hub_frame_ms,
                "online_seconds": settings.hub_online_seconds,
            }
        )

    async def snapshot(request: Request) -> Response:
        principal = await authenticate(request, authenticator, MAP_READ)
        if request.query_params:
            name = next(iter(request.query_params))[:64]
            raise ParameterError(name, f"unknown query parameter {name!r}")
        return Response(hub().snapshot(fleet=view(principal)).text, media_type="application/json")

    async def car(request: Request) -> Response:
        principal = await authenticate(request, authenticator, MAP_READ)
        if request.query_params:
            name = next(iter(request.query_params))[:64]
            raise ParameterError(name, f"unknown query parameter {name!r}")
        car_id = request.path_params["car_id"]
        if not CAR_ID_PATTERN.fullmatch(car_id):
            raise ParameterError("car_id", "car_id: must be 1 to 64 letters, digits and _ . : -")
        state = hub().state
        detail = state.car_detail(car_id)
        # Another fleet's car is not on this caller's map: the same answer as no car.
        if detail is None or not principal.sees(state.fleet_of_car(car_id)):
            raise HTTPException(404, f"no car {car_id} on the map")
        return JSONResponse(detail)

    async def feed(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            params = {k: websocket.query_params.getlist(k) for k in websocket.query_params}
            since, epoch = parse_ws_params(params)
        except ParameterError as exc:
            await _close(websocket, CLOSE_BAD_REQUEST, exc.parameter, exc.detail)
            return
        principal = await _authenticated(websocket)
        if principal is None:
            return
        running = service.hub
        if running is None:
            await _close(websocket, CLOSE_FULL, "hub", "the hub is starting; try again")
            return
        if service.clients >= settings.hub_max_clients:
            await _close(websocket, CLOSE_FULL, "clients", "too many clients; try again later")
            return
        service.clients += 1
        service.metrics.clients.inc()
        try:
            await _serve(websocket, running, since, epoch, view(principal))
        finally:
            service.clients -= 1
            service.metrics.clients.dec()

    async def _authenticated(websocket: WebSocket) -> Principal | None:
        presented = presented_token(websocket.headers)
        if presented is None:
            # Browsers cannot set headers on a WebSocket: the token is the first message,
            # so it never appears in a URL that servers and proxies log.
            try:
                message = await asyncio.wait_for(
                    websocket.receive_text(), settings.hub_auth_timeout_seconds
                )
                data = json.loads(message)
                if isinstance(data, dict) and data.get("type") == "auth":
                    token = data.get("token")
                    presented = token if isinstance(token, str) else None
            except TimeoutError:
                await _close(websocket, CLOSE_UNAUTHORIZED, "token", "no auth message in time")
                return None
            except (ValueError, KeyError, RuntimeError, WebSocketDisconnect):
                presented = None
        try:
            principal = await authenticator.authenticate(
                presented, request_certificate(websocket.scope)
            )
        except AuthError:
            principal = None
        if principal is not None and principal.allows(MAP_READ):
            return principal
        await _close(
            websocket,
            CLOSE_UNAUTHORIZED,
            "token",
            'missing or invalid token: send x-api-token, or {"type":"auth","token":…} first'
            if principal is None
            else principal.missing(MAP_READ),
        )
        return None

    async def _serve(
        websocket: WebSocket,
        running: Hub,
        since: int | None,
        epoch: str | None,
        fleet: str | None,
    ) -> None:
        timeout = settings.hub_send_timeout_seconds

        async def send(frame: Frame) -> None:
            await asyncio.wait_for(websocket.send_text(frame.text), timeout)
            running.counted(frame)()

        async def reader() -> None:
            # Nothing is expected from the client; reading notices when it leaves.
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                while True:
                    await websocket.receive()
                    if websocket.client_state != WebSocketState.CONNECTED:
                        return

        async def sender() -> None:
            frame = running.first_frame(since, epoch, fleet)
            seen = running.tick_no
            await send(frame)
            position = frame.seq
            while True:
                tick = await running.next_tick(seen)
                if running.closed:
                    return
                next_frame = running.next_frame(position, tick - seen, fleet)
                seen = tick
                if next_frame is not None:
                    await send(next_frame)
                    position = next_frame.seq

        reading = asyncio.create_task(reader())
        sending = asyncio.create_task(sender())
        try:
            done, _ = await asyncio.wait({reading, sending}, return_when=asyncio.FIRST_COMPLETED)
            if sending in done and isinstance(sending.exception(), TimeoutError):
                log.info("closing a client that took no frame for %.0f s", timeout)
                await _close(websocket, CLOSE_TOO_SLOW, "client", "too slow to take frames")
            elif sending in done and running.closed:
                await _close(websocket, CLOSE_RESTART, "hub", "the hub is stopping; reconnect")
        finally:
            for task in (reading, sending):
                task.cancel()
            await asyncio.gather(reading, sending, return_exceptions=True)

    async def on_parameter(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ParameterError)
        return problem(400, exc.detail, parameter=exc.parameter)

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)

    probes = probes_app(service.readiness, registry=service.registry)
    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET"]),
        Route("/api/config", config, methods=["GET"]),
        Route("/api/snapshot", snapshot, methods=["GET"]),
        Route("/api/cars/{car_id}", car, methods=["GET"]),
        WebSocketRoute("/ws", feed),
        *probes.routes,
    ]
    if (assets / "assets").is_dir():
        routes.append(Mount("/assets", StaticFiles(directory=assets / "assets"), name="assets"))
    return Starlette(
        routes=routes,
        exception_handlers={
            ParameterError: on_parameter,
            ProblemError: problem_handler,
            HTTPException: on_http,
        },
    )


CLOSE_TIMEOUT_S: Final = 2.0


async def _close(websocket: WebSocket, code: int, field: str, message: str) -> None:
    """Say why, then close; bounded, as a client that stopped reading takes neither."""
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError, TimeoutError):
        if code != CLOSE_TOO_SLOW:
            await asyncio.wait_for(
                websocket.send_text(encode_error(field, message)), CLOSE_TIMEOUT_S
            )
        await asyncio.wait_for(websocket.close(code, f"{field}: {message}"[:120]), CLOSE_TIMEOUT_S)


def assets_present(path: Path) -> bool:
    return (path / "index.html").is_file()
