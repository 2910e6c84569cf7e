"""Reliability tests: model-based, concurrency, faults, hostile input and shutdown.

Every wait in these tests is bounded (an event, a queue, or a polling loop with a deadline),
so a bug shows up as a failure, never as a hang. Helpers live in `tests/helpers.py`.
"""
