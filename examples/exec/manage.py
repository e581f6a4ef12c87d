"""A stand-in for Django's `python manage.py migrate`, for docs/tools.md and tests/postgres/test_exec.py.

Like Django it takes no lock of its own, and its migration is not idempotent: it reads a
counter, works a while, writes the counter plus one. Run twice at once, both runs see the
counter unapplied and it ends at 2. It also refuses to run beside another copy of itself
(a marker row) and keeps each run's start and end, so overlap shows.
Reads the database URL from LOCKGATE_DATABASE_URL, as settings would.
"""

import os
import sys
import time

import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS stand_in_migrations (name text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS stand_in_counter (n int NOT NULL);
CREATE TABLE IF NOT EXISTS stand_in_running (only_one int PRIMARY KEY);
CREATE TABLE IF NOT EXISTS stand_in_runs (pid int, started timestamptz, ended timestamptz);
"""


def migrate(conn: psycopg.Connection) -> None:
    conn.execute(SCHEMA)
    conn.execute("INSERT INTO stand_in_running VALUES (1)")  # fails while another copy runs
    started = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    if not conn.execute("SELECT 1 FROM stand_in_migrations WHERE name = '0002_count'").fetchone():
        count = conn.execute("SELECT coalesce(max(n), 0) FROM stand_in_counter").fetchone()[0]
        time.sleep(0.5)  # the work of a data migration
        conn.execute("DELETE FROM stand_in_counter")
        conn.execute("INSERT INTO stand_in_counter VALUES (%s)", (count + 1,))
        conn.execute("INSERT INTO stand_in_migrations VALUES ('0002_count')")
        print("Applying app.0002_count... OK")
    else:
        print("No migrations to apply.")
    conn.execute("INSERT INTO stand_in_runs VALUES (%s, %s, clock_timestamp())", (os.getpid(), started))
    conn.execute("DELETE FROM stand_in_running")


if __name__ == "__main__":
    if sys.argv[1:2] != ["migrate"]:
        sys.exit("usage: manage.py migrate")
    with psycopg.connect(os.environ["LOCKGATE_DATABASE_URL"], autocommit=True) as connection:
        migrate(connection)
