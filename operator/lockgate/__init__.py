"""lockgate: exactly-once, rollout-gated database schema migrations."""

__version__ = "0.1.0"
