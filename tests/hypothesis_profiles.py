"""The hypothesis profiles of the test suite: "ci" when the environment variable CI is set (as
`.ci/run` runs), "dev" otherwise; `pytest --hypothesis-profile=NAME` picks one explicitly.

"ci" keeps the example counts the suite has always had: hypothesis's default of 100 for a
test that sets none, and each test's own `max_examples`, unchanged (`scaled(n)` is `n`).
"dev" runs a quarter of them, so that a local `pytest` is quicker; CI still runs them all.

Deadlines are off in both (deadline=None, as every property test of the suite already sets):
on a loaded two-core machine running the suite on several pytest-xdist workers, one slow
example is the machine, not the code, and the timing behaviour of Brama is tested on the fake
clock instead.

A test that sets its own count writes today's (the CI) count through `scaled`, e.g.
`settings(max_examples=scaled(1500))`: the profile must be loaded before the test module is
imported, which tests/conftest.py does.
"""

from __future__ import annotations

import os

from hypothesis import settings

CI_EXAMPLES = 100  # hypothesis's default: what every test without max_examples runs today
DEV_EXAMPLES = 25

settings.register_profile("ci", max_examples=CI_EXAMPLES, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=DEV_EXAMPLES, deadline=None)


def load() -> None:
    """Load "ci" when CI is set (to anything but the empty string), else "dev"."""
    settings.load_profile("ci" if os.environ.get("CI") else "dev")


def scaled(ci_examples: int) -> int:
    """A test's example count in the current profile: `ci_examples` itself under "ci"
    (never fewer), proportionally fewer under "dev" (at least 10)."""
    current = settings.default.max_examples
    if current >= CI_EXAMPLES:
        return ci_examples
    return max(10, ci_examples * current // CI_EXAMPLES)
