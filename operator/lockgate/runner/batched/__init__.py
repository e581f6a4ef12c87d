"""Batched background scripts: a long backfill walked in committed batches, resumable, throttled.

header.py (pure) parses `-- lockgate:batch` and decides every step of the walk; walk.py is the
shell that reads key ranges, runs each batch with its progress row and pauses on SIGTERM;
pressure.py reads the signals (standby lag, vacuum, lock queues) a batch waits for.
"""
