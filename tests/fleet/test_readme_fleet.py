"""The README's "Running a fleet" example runs as printed, against the test's Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fleet.harness import RedisServer

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_fleet_example_stops_the_other_workers(
        server: RedisServer, namespace: str, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running a fleet", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    script = tmp_path / "fleet_example.py"
    script.write_text(code)
    env = {**os.environ, "BRAMA_BACKEND": server.url, "BRAMA_NAMESPACE": namespace,
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=45, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "w1: tripped it (3 failures)" in done.stdout, done.stdout
    for name in ("w2", "w3"):  # three processes share the pipe: found, not split by line
        found = re.search(rf"{name}: refused ([0-9.]+) ms after w1's trip: circuit of "
                          r"connection 'payments' is open", done.stdout)
        assert found is not None, done.stdout
        assert float(found.group(1)) < 100.0, done.stdout
