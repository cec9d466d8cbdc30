"""`facetell serve`: the web page and REST API on a socket this process opens."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from facetell.cli.common import app, err_console, fail, no_face_detect_option, warn_if_uncalibrated
from facetell.errors import FacetellError

if TYPE_CHECKING:
    from facetell.server.settings import Settings


def server_settings(flags: dict[str, Any]) -> Settings:
    """`serve`'s settings from its flags and FACETELL_* variables; a bad value is one line
    naming the flag or variable it came from, not pydantic's traceback."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from facetell.server.settings import Settings

    def origin(field: str) -> str:
        return f"--{field.replace('_', '-')}" if field in flags else f"FACETELL_{field.upper()}"

    try:
        return Settings(**flags)
    except ValidationError as error:
        problems = "; ".join(
            f"{origin(str(p['loc'][0]))}: {p['msg'].lower()} (got {p['input']!r})"
            for p in error.errors()
        )
        raise fail(problems) from None
    except SettingsError as error:  # a list or mapping variable that is not JSON
        field = re.search(r'field "(\w+)"', str(error))
        name = origin(field.group(1)) if field else "a FACETELL_ variable"
        raise fail(f"{name}: not JSON, as a list is written: '[\"https://example.org\"]'") from None


def listen(host: str, port: int) -> socket.socket:
    """A listening socket of the family `host` names: `::` and `::1` need IPv6, and `::`
    takes IPv4 connections too, as 0.0.0.0 would."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    dualstack = host == "::" and socket.has_dualstack_ipv6()
    return socket.create_server((host, port), family=family, dualstack_ipv6=dualstack)


@app.command("serve")
def serve_command(
    host: str | None = typer.Option(None, help="Interface (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000)."),
    model: Path | None = typer.Option(
        None, help="Model bundle: a folder or .zip (default: the shipped one, also named default)."
    ),
    max_upload_mb: float | None = typer.Option(None, help="Largest request body (default 20)."),
    max_concurrency: int | None = typer.Option(None, help="Inferences at once before 503."),
    root_path: str | None = typer.Option(
        None,
        help="The path a reverse proxy serves facetell under (/facetell: the page is at "
        "/facetell/), for the API docs' server address.",
    ),
    no_face_detect: bool = no_face_detect_option(),
    access_log: bool = typer.Option(
        False,
        "--access-log",
        help="Log one line per request on stdout, as uvicorn does: client, method, path and "
        "status (off by default: requests say whose photos were judged).",
    ),
) -> None:
    """Serve the web page and the REST API.

    Settings also come from FACETELL_* variables: FACETELL_API_TOKEN turns on bearer tokens,
    FACETELL_CORS_ORIGINS allows origins."""
    import uvicorn

    from facetell.server import create_app
    from facetell.server.app import load_detector

    flags = {
        "host": host,
        "port": port,
        "model": model,
        "max_upload_mb": max_upload_mb,
        "max_concurrency": max_concurrency,
        "root_path": None if root_path is None else root_path.rstrip("/"),
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    if no_face_detect:
        overrides["detect_faces"] = False
    if access_log:
        overrides["access_log"] = True
    settings = server_settings(overrides)
    if model is None:  # FACETELL_MODEL is read, and named when wrong, by Detector.load
        settings.model = None
    try:
        detector = load_detector(settings)  # loaded once, and before binding the port
    except FacetellError as error:
        raise fail(str(error)) from None
    address = f"{settings.host}:{settings.port}"
    try:  # bound here, so a port in use is one line and the server keeps the socket it checked
        listening = listen(settings.host, settings.port)
    except OSError as error:
        known = error.errno is not None and error.errno > 0  # getaddrinfo's are negative
        reason = (os.strerror(error.errno) if known else error.strerror or str(error)).lower()
        hint = {
            errno.EADDRINUSE: "choose another --port or stop what uses it",
            errno.EACCES: "choose a --port above 1023",
        }.get(error.errno, "give --host an address of this machine (0.0.0.0: all of them)")
        raise fail(f"cannot listen on {address} ({reason}); {hint}") from None
    bound_host, bound_port = listening.getsockname()[:2]
    everywhere = ipaddress.ip_address(bound_host).is_unspecified  # 0.0.0.0 or ::
    shown = "127.0.0.1" if everywhere else settings.host
    shown = f"[{shown}]" if ":" in shown else shown  # an IPv6 address in a URL
    err_console.print(
        f"facetell is serving on http://{shown}:{bound_port}"
        + (" and on every other address of this machine" if everywhere else "")
    )
    if not ipaddress.ip_address(bound_host).is_loopback and not settings.api_token:
        err_console.print(
            "note: other machines can reach it with no token; set FACETELL_API_TOKEN to ask one"
        )
    warn_if_uncalibrated(detector)  # after the address line, which scripts read first
    config = uvicorn.Config(
        create_app(settings, detector),
        log_level="warning",  # uvicorn's own start-up lines repeat the address said above
        access_log=settings.access_log,
        root_path=settings.root_path,
    )
    if settings.access_log:  # set after Config, which gives every uvicorn logger log_level
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    uvicorn.Server(config).run(sockets=[listening])
