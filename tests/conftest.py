"""The fixtures `brama_system` and `brama_clock` come from Brama's own pytest plugin; shared
helpers live in `tests/helpers.py`.

The hypothesis profile ("ci" under CI, "dev" otherwise) is loaded here, before any test module
is imported, because the tests' settings read it when they are defined: see
`tests/hypothesis_profiles.py`.
"""

from __future__ import annotations

from tests import hypothesis_profiles

hypothesis_profiles.load()
