"""The status page: a live view of every connection, as a WSGI application (stdlib only).

    from brama.web import app, make_server

    server = make_server(app(), port=8000)   # 127.0.0.1 only
    server.serve_forever()

or mount `app()` in any WSGI server or framework (it uses relative URLs, so any prefix works),
or run `python -m brama dashboard [--port N] [--demo]` (with `--backend URL [--namespace NS]`
it shows the whole fleet on that backend). The page lists every connection with
its state, failure count, success rate, time left open and a sparkline of recent calls, and
updates live without reloading: it polls `/api/connections` (JSON) and listens to `/events`
(Server-Sent Events). See docs/observability.md.
"""

from brama.web._app import DEFAULT_EVENTS, StatusApp, app
from brama.web._server import ThreadingWSGIServer, make_server

__all__ = ["DEFAULT_EVENTS", "StatusApp", "ThreadingWSGIServer", "app", "make_server"]
