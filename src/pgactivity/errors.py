"""One error hierarchy for the whole package; driver errors are translated here."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

# SQLSTATEs raised by the schema (sql/migrations), class "PA".
SQLSTATE_INVALID_TRANSITION = "PA001"
SQLSTATE_ACTIVITY_NOT_FOUND = "PA002"
SQLSTATE_IMMUTABLE_COLUMN = "PA003"


class PgActivityError(Exception):
    """Base class of every error pgactivity raises on purpose."""

    code = "pgactivity_error"


class ConfigurationError(PgActivityError):
    """The settings cannot work (missing secret, bad URL, ...)."""

    code = "configuration_error"


class ActivityNotFound(PgActivityError):
    """No activity has this id."""

    code = "activity_not_found"


class InvalidTransition(PgActivityError):
    """The activity is finished (completed or failed) and cannot change state again."""

    code = "invalid_transition"


class ValidationError(PgActivityError):
    """The database refused the values (unknown status, empty organization, ...)."""

    code = "validation_error"


class InvalidProgress(ValidationError):
    """Progress outside 0..100."""

    code = "invalid_progress"


class AuthenticationError(PgActivityError):
    """A token is missing, malformed, expired or carries no organization."""

    code = "unauthorized"


def translate(exc: psycopg.Error) -> PgActivityError | None:
    """Map a driver error raised by the schema's rules to our typed error, or None."""
    message = exc.diag.message_primary or str(exc)
    state = exc.sqlstate
    if state == SQLSTATE_INVALID_TRANSITION:
        return InvalidTransition(message)
    if state == SQLSTATE_ACTIVITY_NOT_FOUND:
        return ActivityNotFound(message)
    if state == SQLSTATE_IMMUTABLE_COLUMN:
        return ValidationError(message)
    if isinstance(exc, pg_errors.CheckViolation):
        if exc.diag.constraint_name == "agent_activities_progress_range":
            return InvalidProgress(message)
        return ValidationError(message)
    if isinstance(exc, pg_errors.NotNullViolation | pg_errors.InvalidTextRepresentation):
        return ValidationError(message)
    return None
