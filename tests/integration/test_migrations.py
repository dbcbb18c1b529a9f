"""The schema is built by the migrations alone, and `migrate down` undoes each one exactly."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgactivity import migrations

MIGRATION_NAME = re.compile(r"^(\d{14})_[a-z0-9_]+\.sql$")

# Everything a migration can create in schema public, in a form that compares
# equal only when the objects are the same (definitions, not just names).
CATALOG_QUERIES = {
    "relations": """
        SELECT c.relname, c.relkind::text, obj_description(c.oid, 'pg_class')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname NOT LIKE 'schema_migrations%'
        ORDER BY 1""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relname NOT LIKE 'schema_migrations%'
        ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid, true), condeferrable,
               condeferred
        FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace
          AND conrelid NOT IN (SELECT oid FROM pg_class WHERE relname = 'schema_migrations')
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
        ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
        ORDER BY 1, 2""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid, true)
        FROM pg_trigger
        WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class
                                                WHERE relnamespace = 'public'::regnamespace)
        ORDER BY 1, 2""",
    "extensions": """
        SELECT e.extname, e.extnamespace::regnamespace::text FROM pg_extension e
        WHERE e.extname <> 'plpgsql'
        ORDER BY 1""",
    "types": """
        SELECT t.typname, t.typtype::text FROM pg_type t
        WHERE t.typnamespace = 'public'::regnamespace
          AND t.typname NOT LIKE '%schema_migrations'
        ORDER BY 1""",
}


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {name: conn.execute(query).fetchall() for name, query in CATALOG_QUERIES.items()}


def migration_files() -> list[Path]:
    return sorted(p for p in migrations.migrations_dir().iterdir() if p.suffix == ".sql")


def dbmate(url: str, migrations_dir: Path, *args: str) -> str:
    """The bundled dbmate binary on a migrations directory of our choosing."""
    proc = subprocess.run(
        [
            migrations.dbmate_binary(),
            "--url",
            migrations.dbmate_url(url),
            "--migrations-dir",
            str(migrations_dir),
            "--no-dump-schema",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr or proc.stdout
    return proc.stdout


def versions(files: list[Path]) -> list[str]:
    versions = []
    for path in files:
        match = MIGRATION_NAME.match(path.name)
        assert match, path.name
        versions.append(match.group(1))
    return versions


def migrate_up_to(url: str, directory: Path, before: str | None = None) -> None:
    """Apply the migrations whose files sort before `before` (all when None), from `directory`."""
    directory.mkdir(exist_ok=True)
    for path in migration_files():
        if before is None or path.name < before:
            shutil.copy(path, directory / path.name)
    dbmate(url, directory, "migrate")


def test_migration_files_follow_dbmate_format() -> None:
    files = migration_files()
    assert len(files) >= 3
    vs = versions(files)
    assert len(set(vs)) == len(vs)
    for path in files:
        text = path.read_text()
        up = text.find("-- migrate:up")
        down = text.find("-- migrate:down")
        assert 0 <= up < down, f"{path.name}: needs -- migrate:up then -- migrate:down"
        assert text[down:].strip() != "-- migrate:down", f"{path.name}: empty down migration"


def test_up_then_down_one_at_a_time_restores_each_schema(empty_db_url: str, tmp_path: Path) -> None:
    files = migration_files()
    url = empty_db_url
    states = [snapshot(url)]
    assert all(rows == [] for rows in states[0].values()), states[0]

    # Apply the migrations one at a time: a directory holding only the first k files.
    partial = tmp_path / "migrations"
    partial.mkdir()
    for k, path in enumerate(files, start=1):
        shutil.copy(path, partial / path.name)
        dbmate(url, partial, "migrate")
        assert migrations.applied_versions(url) == versions(files[:k])
        states.append(snapshot(url))
        assert states[-1] != states[-2], f"{path.name} changed nothing"

    full = states[-1]
    assert {r[0] for r in full["relations"]} >= {
        "agent_activities",
        "agent_activity_events",
        "agent_activity_counters",
    }

    # The real `migrate down`, one migration at a time.
    for k in range(len(files), 0, -1):
        migrations.migrate_down(url)
        assert migrations.applied_versions(url) == versions(files[: k - 1])
        assert snapshot(url) == states[k - 1], f"down of {files[k - 1].name} did not undo it"
    assert all(rows == [] for rows in snapshot(url).values())

    # And up again, the real way, in one go.
    migrations.migrate_up(url)
    assert migrations.applied_versions(url) == versions(files)
    assert snapshot(url) == full


def test_migrate_up_is_idempotent_and_down_all_empties(empty_db_url: str) -> None:
    url = empty_db_url
    migrations.migrate_up(url)
    first = snapshot(url)
    migrations.migrate_up(url)
    assert snapshot(url) == first
    migrations.migrate_down(url, all_=True)
    assert migrations.applied_versions(url) == []
    assert all(rows == [] for rows in snapshot(url).values())


def test_migrate_status_lists_each_migration(empty_db_url: str) -> None:
    url = empty_db_url
    files = migration_files()
    pending = migrations.migrate_status(url)
    for path in files:
        assert re.search(rf"\[ \] {re.escape(path.name)}", pending), pending

    migrations.migrate_up(url)
    migrations.migrate_down(url)
    status = migrations.migrate_status(url)
    for path in files[:-1]:
        assert re.search(rf"\[X\] {re.escape(path.name)}", status), status
    assert re.search(rf"\[ \] {re.escape(files[-1].name)}", status), status
    assert re.search(rf"Applied: {len(files) - 1}\b", status), status
    assert re.search(r"Pending: 1\b", status), status


def test_migrated_schema_works(empty_db_url: str) -> None:
    """Smoke test on the schema built here (not the template): a write becomes an event."""
    migrations.migrate_up(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("SELECT agent_activity_start(organization_id => 'org-m', agent_type => 'executor')")
        row = conn.execute("SELECT organization_id, seq, type FROM agent_activity_events").fetchone()
    assert row == ("org-m", 1, "agent_started")


def test_migrate_down_on_empty_database_fails_clearly(empty_db_url: str) -> None:
    with pytest.raises(migrations.MigrationError, match="dbmate down failed"):
        migrations.migrate_down(empty_db_url)


def test_migrate_reports_unreachable_database() -> None:
    with pytest.raises(migrations.MigrationError):
        migrations.migrate_status("postgresql://nobody@127.0.0.1:1/nothing?sslmode=disable&connect_timeout=2")


LIMITS = "20261201000002_activity_limits.sql"
SQL_VALIDATED = """
SELECT conname, convalidated FROM pg_constraint
WHERE conrelid = 'agent_activities'::regclass AND conname LIKE '%%\\_at\\_range' ORDER BY 1
"""
INSERT_INFINITY = "INSERT INTO agent_activities (organization_id, agent_type, created_at) VALUES ('o', 'x', 'infinity')"


def test_timestamp_limits_keep_rows_from_before_and_check_every_new_write(empty_db_url: str, tmp_path: Path) -> None:
    """Rows written before the limits that break the range do not stop the migrations; every
    new write is checked (by the guard trigger since 20261202000001, with the constraint's name),
    an update of such an old row is refused, and the old rows stay readable."""
    url = empty_db_url
    files = migration_files()
    assert LIMITS in [p.name for p in files]
    migrate_up_to(url, tmp_path / "migrations", LIMITS)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO agent_activities (organization_id, agent_type, created_at) VALUES "
            "('org-old', 'x', 'infinity'), ('org-old', 'x', '10001-01-01'), ('org-ok', 'x', now())"
        )

    migrate_up_to(url, tmp_path / "migrations")
    assert migrations.applied_versions(url) == versions(files)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute(SQL_VALIDATED).fetchall() == []  # the guard checks them
        with pytest.raises(psycopg.errors.CheckViolation) as caught:
            conn.execute(INSERT_INFINITY)
        assert caught.value.diag.constraint_name == "agent_activities_created_at_range"
        with pytest.raises(psycopg.errors.CheckViolation) as caught:
            conn.execute("UPDATE agent_activities SET message = 'm' WHERE organization_id = 'org-old'")
        assert caught.value.diag.constraint_name == "agent_activities_created_at_range"
        conn.execute("INSERT INTO agent_activities (organization_id, agent_type) VALUES ('org-new', 'x')")
        rows = conn.execute("SELECT organization_id, count(*) FROM agent_activities GROUP BY 1 ORDER BY 1")
        assert rows.fetchall() == [("org-new", 1), ("org-ok", 1), ("org-old", 2)]

    # Down past 20261202000001 gives the constraints back, NOT VALID while the old rows are there.
    write_path = [p for p in files if p.name > LIMITS]
    for _ in write_path:
        migrations.migrate_down(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute(SQL_VALIDATED).fetchall() == [
            ("agent_activities_completed_at_range", True),
            ("agent_activities_created_at_range", False),
            ("agent_activities_updated_at_range", False),
        ]
        with pytest.raises(psycopg.errors.CheckViolation) as caught:
            conn.execute(INSERT_INFINITY)
        assert caught.value.diag.constraint_name == "agent_activities_created_at_range"
    migrations.migrate_down(url, all_=True)
    assert all(rows == [] for rows in snapshot(url).values())


WRITE_PATH = "20261202000001_write_path.sql"


def test_write_path_migration_gives_finished_rows_their_search_text_without_events(
    empty_db_url: str, tmp_path: Path
) -> None:
    url = empty_db_url
    migrate_up_to(url, tmp_path / "migrations", WRITE_PATH)
    with psycopg.connect(url, autocommit=True) as conn:
        running = conn.execute("SELECT agent_activity_start('org-w', 'x', 'runner', NULL, 'cat')").fetchone()
        done = conn.execute("SELECT agent_activity_start('org-w', 'x', 'builder', NULL, 'nightly')").fetchone()
        assert running
        assert done
        conn.execute("SELECT agent_activity_complete(%s, NULL, 'linked the frobnicator')", (done[0],))
        before = conn.execute("SELECT id, updated_at FROM agent_activities ORDER BY id").fetchall()
        events = conn.execute("SELECT count(*) FROM agent_activity_events").fetchone()

    migrate_up_to(url, tmp_path / "migrations")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT id, updated_at FROM agent_activities ORDER BY id").fetchall() == before
        assert conn.execute("SELECT count(*) FROM agent_activity_events").fetchone() == events
        rows = conn.execute("SELECT id, search_text FROM agent_activities ORDER BY created_at").fetchall()
        assert rows == [(running[0], None), (done[0], "builder linked the frobnicator nightly")]
        triggers = conn.execute(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'agent_activities'::regclass"
            " AND NOT tgisinternal ORDER BY 1"
        ).fetchall()
        assert triggers == [("agent_activities_emit_event", "O"), ("agent_activities_guard", "O")]
