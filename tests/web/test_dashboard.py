"""`python -m brama dashboard`: the demo behind a real page in a child process (stopped with
Ctrl-C), the checks of the options. The page of a fleet (`--backend`) is tested against a
real Redis in tests/fleet/test_fleet_dashboard.py."""

from __future__ import annotations

import io
import json
import socket
import threading
import urllib.request

import pytest

import brama
from brama.__main__ import main
from brama.errors import ConfigError
from brama.web._dashboard import DashboardConfig, run, start_system
from tests.helpers import WAIT, dashboard_process, wait_until


def test_the_demo_moves_circuits_behind_the_page_and_ctrl_c_stops_it():
    with dashboard_process("--demo") as (url, lines):
        assert sum("demo service" in line for line in lines) == 3

        def connections():
            with urllib.request.urlopen(url + "api/connections", timeout=WAIT) as response:
                return json.load(response)["connections"]

        assert sorted((c["scope"] or "", c["identifier"]) for c in connections()) == [
            ("", "flaky-api"), ("", "search"), ("billing", "payments")]
        wait_until(lambda: all(c["total_successes"] + c["total_failures"] > 0
                               for c in connections()), what="the demo workers' calls")
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            assert b"<title>Brama status</title>" in response.read()


@pytest.mark.parametrize("port", ["65536", "-1", "http"])
def test_a_bad_port_is_refused_with_the_range(port, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "--port", port])
    assert exit_info.value.code == 2
    assert "--port" in capsys.readouterr().err


@pytest.fixture
def no_default_system():
    """The dashboard starts and shuts down the default system: start from none."""
    brama.shutdown()
    yield
    brama.shutdown()


def serve_until_ready(config):
    """Run the dashboard in a thread; returns (thread, stop event, output, exit status box)."""
    out, err = io.StringIO(), io.StringIO()
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run(config, out, err, stop)),
                              daemon=True)
    thread.start()
    wait_until(lambda: "Brama dashboard on" in out.getvalue() or result,
               what="the dashboard to listen")
    return thread, stop, out, err, result


def test_other_backend_errors_propagate(monkeypatch, no_default_system):
    def start(**options):
        raise ConfigError("backend='redis:/oops' is not a redis:// URL")

    monkeypatch.setattr(brama, "start", start)
    with pytest.raises(ConfigError, match="not a redis:// URL"):
        start_system("redis:/oops")


def test_a_bad_backend_url_exits_2_with_the_reason(no_default_system):
    out, err = io.StringIO(), io.StringIO()
    assert run(DashboardConfig(port=0, backend="http://127.0.0.1:6379/0"), out, err) == 2
    assert err.getvalue().startswith("python -m brama dashboard: ")
    assert "backend" in err.getvalue() and "Traceback" not in err.getvalue()
    assert out.getvalue() == ""


def test_namespace_without_backend_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "--namespace", "shop"])
    assert exit_info.value.code == 2
    assert "--namespace needs --backend" in capsys.readouterr().err


@pytest.mark.parametrize("interval", ["0", "3601", "soon"])
def test_a_bad_interval_is_refused_with_the_range(interval, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "--interval", interval])
    assert exit_info.value.code == 2
    assert "--interval" in capsys.readouterr().err


def test_a_port_in_use_is_reported(no_default_system):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out, err = io.StringIO(), io.StringIO()
        assert run(DashboardConfig(port=port), out, err) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err.getvalue()
