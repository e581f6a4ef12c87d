"""Alembic's environment: the database from LOCKGATE_DATABASE_URL (what lockgate's Jobs get), psycopg 3."""

import os
import sys
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy import create_engine, pool

sys.path.insert(0, str(Path(__file__).parent))
from models import Base  # noqa: E402

if context.config.config_file_name:  # alembic.ini's logging: "Running upgrade e1 -> e2" on stderr
    fileConfig(context.config.config_file_name)


def engine_url() -> str:
    """SQLAlchemy's name for psycopg 3; a plain postgresql:// URL would pick psycopg2."""
    url = os.environ["LOCKGATE_DATABASE_URL"]
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def run_migrations_online() -> None:
    engine = create_engine(engine_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():  # PostgreSQL: the whole upgrade commits or none of it
            context.run_migrations()


if context.is_offline_mode():
    sys.exit("this example runs online only: alembic upgrade expand@head")
run_migrations_online()
