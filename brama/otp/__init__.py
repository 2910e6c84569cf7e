"""brama.otp: a small OTP layer on pykka (supervisor, registry, event bus, timers, clocks).

Usable by any pykka application on its own; Brama's connection management is built on it.
"""
