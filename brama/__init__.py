"""Brama: circuit breakers and connection health for external dependencies, as OTP-style actors."""
