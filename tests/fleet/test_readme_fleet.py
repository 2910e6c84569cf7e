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
    lines = sorted(done.stdout.splitlines())
    assert lines[0] == "w1: tripped it (3 failures)", done.stdout
    for name, line in zip(("w2", "w3"), lines[1:], strict=True):
        assert line.startswith(f"{name}: refused ") and "is open" in line, done.stdout
        waited = float(line.split("refused ")[1].split(" ms")[0])
        assert waited < 100.0, line
