"""Brama under the process models Python services run in: forked workers (gunicorn
--preload, celery prefork, multiprocessing's fork start method), asyncio with timeouts and
cancellation, helpers that call each other through one connection, and permits owned by
calls."""
