"""pgactivity: stream AI-agent activity from PostgreSQL to web UIs in real time."""

from __future__ import annotations

from pgactivity.errors import (
    ActivityNotFound,
    InvalidProgress,
    InvalidTransition,
    PgActivityError,
    ValidationError,
)
from pgactivity.tracker import ActivityHandle, ActivityTracker, AsyncActivityTracker

__all__ = [
    "ActivityHandle",
    "ActivityNotFound",
    "ActivityTracker",
    "AsyncActivityTracker",
    "InvalidProgress",
    "InvalidTransition",
    "PgActivityError",
    "ValidationError",
]
__version__ = "0.1.0"
