"""The fixtures `brama_system` and `brama_clock` come from Brama's own pytest plugin; shared
helpers live in `tests/helpers.py`."""
