-- migrate:up

-- What a write costs PostgreSQL (issue 12), from profiles of agent_activity_start
-- and agent_activity_progress in one backend:
--
-- 1. CHECK constraints (and stored generated columns) are read back from their
--    stored form and planned again at every INSERT or UPDATE statement
--    (ExecConstraints: 13 % of a start's CPU). The rules of agent_activities'
--    seven CHECK constraints are checked by the guard trigger instead, whose
--    expressions PL/pgSQL keeps compiled for the session: the same rules
--    (NULL passes, as in a CHECK; NOT NULL stays a column constraint), the
--    same SQLSTATE 23514 and the same constraint name in the error
--    (diag.constraint_name), for INSERT and UPDATE alike. When a row breaks
--    several, the first by name is reported, as PostgreSQL did. The event
--    log's type check goes too: the emit trigger is the log's only writer and
--    sets the type itself. Rows written before 20261201000002 that break a
--    timestamp range stay as they were (the range constraints of such a
--    database were NOT VALID); an UPDATE of such a row fails, as it did.
-- 2. Progress updates are HOT (heap-only: no index is written). PostgreSQL
--    makes an update HOT only when no column that any index reads changes,
--    and the trigram index of search read the message, which every progress
--    update changes, so each one wrote a new entry into all six btree
--    indexes. The index now reads search_text, which the guard trigger sets:
--    NULL while the activity runs (the index holds finished activities only),
--    the name, message and category once it has finished. Existing finished
--    rows get theirs below (an UPDATE of each, with the triggers off: no
--    events, updated_at unchanged). A fill factor of 85 leaves room on each
--    page for the next version of its rows.
-- 3. The emit trigger finds the organization's counter row through its
--    primary key: with few organizations the counter table is a page or two
--    and the planner chose a sequential scan, which tests the visibility of
--    every version on those pages (counters are updated all the time).

ALTER TABLE agent_activities
    DROP CONSTRAINT agent_activities_agent_type_valid,
    DROP CONSTRAINT agent_activities_completed_at_range,
    DROP CONSTRAINT agent_activities_created_at_range,
    DROP CONSTRAINT agent_activities_organization_id_valid,
    DROP CONSTRAINT agent_activities_progress_range,
    DROP CONSTRAINT agent_activities_status_valid,
    DROP CONSTRAINT agent_activities_updated_at_range;

ALTER TABLE agent_activity_events DROP CONSTRAINT agent_activity_events_type_valid;

-- Which rule a row breaks, in the order PostgreSQL tested the CHECK constraints
-- (by name); called only when one does.
CREATE FUNCTION agent_activities_check_violation(a agent_activities) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_name text;
BEGIN
    IF NOT coalesce(char_length($1.agent_type) BETWEEN 1 AND 200, true) THEN
        v_name := 'agent_activities_agent_type_valid';
    ELSIF NOT coalesce($1.completed_at >= '1970-01-01 00:00:00+00'
                       AND $1.completed_at < '2200-01-01 00:00:00+00', true) THEN
        v_name := 'agent_activities_completed_at_range';
    ELSIF NOT coalesce($1.created_at >= '1970-01-01 00:00:00+00'
                       AND $1.created_at < '2200-01-01 00:00:00+00', true) THEN
        v_name := 'agent_activities_created_at_range';
    ELSIF NOT coalesce(char_length($1.organization_id) BETWEEN 1 AND 200, true) THEN
        v_name := 'agent_activities_organization_id_valid';
    ELSIF NOT coalesce($1.progress BETWEEN 0 AND 100, true) THEN
        v_name := 'agent_activities_progress_range';
    ELSIF NOT coalesce($1.status IN ('running', 'completed', 'failed'), true) THEN
        v_name := 'agent_activities_status_valid';
    ELSE
        v_name := 'agent_activities_updated_at_range';
    END IF;
    RAISE EXCEPTION 'new row for relation "agent_activities" violates check constraint "%"', v_name
        USING ERRCODE = 'check_violation',
              CONSTRAINT = v_name,
              TABLE = 'agent_activities';
END;
$$;

CREATE OR REPLACE FUNCTION agent_activities_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.updated_at := NEW.created_at;
        IF NEW.status <> 'running' AND NEW.completed_at IS NULL THEN
            NEW.completed_at := NEW.created_at;
        END IF;
    ELSE
        IF NEW.id IS DISTINCT FROM OLD.id
           OR NEW.organization_id IS DISTINCT FROM OLD.organization_id THEN
            RAISE EXCEPTION 'the id and organization_id of activity % cannot change', OLD.id
                USING ERRCODE = 'PA003',
                      HINT = 'Start a new activity instead.';
        END IF;

        IF OLD.status <> 'running' THEN
            IF NEW.status IS DISTINCT FROM OLD.status THEN
                RAISE EXCEPTION 'activity % is already %, it cannot become %', OLD.id, OLD.status, NEW.status
                    USING ERRCODE = 'PA001',
                          HINT = 'A finished activity (completed or failed) is final.';
            END IF;
            IF NEW.progress IS DISTINCT FROM OLD.progress OR NEW.message IS DISTINCT FROM OLD.message THEN
                RAISE EXCEPTION 'activity % is already %, it cannot take more progress', OLD.id, OLD.status
                    USING ERRCODE = 'PA001',
                          HINT = 'A finished activity (completed or failed) is final.';
            END IF;
        END IF;

        -- statement_timestamp(), not now(): each write of a long transaction gets its own time.
        NEW.created_at := OLD.created_at;
        NEW.updated_at := statement_timestamp();
        IF NEW.status <> 'running' AND OLD.status = 'running' THEN
            NEW.completed_at := coalesce(NEW.completed_at, statement_timestamp());
        END IF;
    END IF;

    -- What the search API's trigram index reads: nothing while the activity runs, so that a
    -- progress update changes no column an index reads (a HOT update).
    NEW.search_text := CASE WHEN NEW.status <> 'running' THEN
        coalesce(NEW.agent_name, '') || ' ' || coalesce(NEW.message, '') || ' ' || coalesce(NEW.category, '') END;

    -- The rules of the CHECK constraints this replaces (see the top of this file).
    IF NOT (coalesce(NEW.status IN ('running', 'completed', 'failed'), true)
            AND coalesce(NEW.progress BETWEEN 0 AND 100, true)
            AND coalesce(char_length(NEW.organization_id) BETWEEN 1 AND 200, true)
            AND coalesce(char_length(NEW.agent_type) BETWEEN 1 AND 200, true)
            AND coalesce(NEW.created_at >= '1970-01-01 00:00:00+00' AND NEW.created_at < '2200-01-01 00:00:00+00', true)
            AND coalesce(NEW.updated_at >= '1970-01-01 00:00:00+00' AND NEW.updated_at < '2200-01-01 00:00:00+00', true)
            AND coalesce(NEW.completed_at >= '1970-01-01 00:00:00+00'
                         AND NEW.completed_at < '2200-01-01 00:00:00+00', true)) THEN
        PERFORM agent_activities_check_violation(NEW);
    END IF;
    RETURN NEW;
END;
$$;

-- Every statement of the trigger looks up one organization's rows by key.
ALTER FUNCTION agent_activities_emit_event() SET enable_seqscan = off;
ALTER FUNCTION agent_activity_counters_settle() SET enable_seqscan = off;

DROP INDEX agent_activities_search_trgm_idx;
ALTER TABLE agent_activities ADD COLUMN search_text text;
COMMENT ON COLUMN agent_activities.search_text IS
    'What the search API''s trigram index reads, set by the guard trigger (pgactivity): '
    'NULL while running, so that progress updates stay HOT.';
ALTER TABLE agent_activities
    DISABLE TRIGGER agent_activities_guard,
    DISABLE TRIGGER agent_activities_emit_event;
UPDATE agent_activities
   SET search_text = coalesce(agent_name, '') || ' ' || coalesce(message, '') || ' ' || coalesce(category, '')
 WHERE status <> 'running';
ALTER TABLE agent_activities
    ENABLE TRIGGER agent_activities_guard,
    ENABLE TRIGGER agent_activities_emit_event;
CREATE INDEX agent_activities_search_trgm_idx
    ON agent_activities USING gin (search_text gin_trgm_ops)
    WHERE status <> 'running';
ALTER TABLE agent_activities SET (fillfactor = 85);

-- migrate:down

ALTER TABLE agent_activities RESET (fillfactor);
DROP INDEX agent_activities_search_trgm_idx;
ALTER TABLE agent_activities DROP COLUMN search_text;
CREATE INDEX agent_activities_search_trgm_idx
    ON agent_activities USING gin (
        (coalesce(agent_name, '') || ' ' || coalesce(message, '') || ' ' || coalesce(category, '')) gin_trgm_ops)
    WHERE status <> 'running';

ALTER FUNCTION agent_activity_counters_settle() RESET enable_seqscan;
ALTER FUNCTION agent_activities_emit_event() RESET enable_seqscan;

CREATE OR REPLACE FUNCTION agent_activities_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.updated_at := NEW.created_at;
        IF NEW.status <> 'running' AND NEW.completed_at IS NULL THEN
            NEW.completed_at := NEW.created_at;
        END IF;
        RETURN NEW;
    END IF;

    IF NEW.id IS DISTINCT FROM OLD.id
       OR NEW.organization_id IS DISTINCT FROM OLD.organization_id THEN
        RAISE EXCEPTION 'the id and organization_id of activity % cannot change', OLD.id
            USING ERRCODE = 'PA003',
                  HINT = 'Start a new activity instead.';
    END IF;

    IF OLD.status <> 'running' THEN
        IF NEW.status IS DISTINCT FROM OLD.status THEN
            RAISE EXCEPTION 'activity % is already %, it cannot become %', OLD.id, OLD.status, NEW.status
                USING ERRCODE = 'PA001',
                      HINT = 'A finished activity (completed or failed) is final.';
        END IF;
        IF NEW.progress IS DISTINCT FROM OLD.progress OR NEW.message IS DISTINCT FROM OLD.message THEN
            RAISE EXCEPTION 'activity % is already %, it cannot take more progress', OLD.id, OLD.status
                USING ERRCODE = 'PA001',
                      HINT = 'A finished activity (completed or failed) is final.';
        END IF;
    END IF;

    -- statement_timestamp(), not now(): each write of a long transaction gets its own time.
    NEW.created_at := OLD.created_at;
    NEW.updated_at := statement_timestamp();
    IF NEW.status <> 'running' AND OLD.status = 'running' THEN
        NEW.completed_at := coalesce(NEW.completed_at, statement_timestamp());
    END IF;
    RETURN NEW;
END;
$$;
DROP FUNCTION agent_activities_check_violation(agent_activities);

ALTER TABLE agent_activity_events ADD CONSTRAINT agent_activity_events_type_valid
    CHECK (type IN ('agent_started', 'agent_progress', 'agent_completed', 'agent_failed'));

ALTER TABLE agent_activities
    ADD CONSTRAINT agent_activities_status_valid
        CHECK (status IN ('running', 'completed', 'failed')),
    ADD CONSTRAINT agent_activities_progress_range
        CHECK (progress BETWEEN 0 AND 100),
    ADD CONSTRAINT agent_activities_organization_id_valid
        CHECK (char_length(organization_id) BETWEEN 1 AND 200),
    ADD CONSTRAINT agent_activities_agent_type_valid
        CHECK (char_length(agent_type) BETWEEN 1 AND 200);

-- NOT VALID: rows written while the guard checked the ranges are fine, older ones may not be.
ALTER TABLE agent_activities
    ADD CONSTRAINT agent_activities_created_at_range
        CHECK (created_at >= '1970-01-01 00:00:00+00' AND created_at < '2200-01-01 00:00:00+00') NOT VALID,
    ADD CONSTRAINT agent_activities_updated_at_range
        CHECK (updated_at >= '1970-01-01 00:00:00+00' AND updated_at < '2200-01-01 00:00:00+00') NOT VALID,
    ADD CONSTRAINT agent_activities_completed_at_range
        CHECK (completed_at >= '1970-01-01 00:00:00+00' AND completed_at < '2200-01-01 00:00:00+00') NOT VALID;

-- Validated where the rows allow it, as migration 20261201000002 left them.
DO $$
DECLARE
    v_name text;
BEGIN
    FOREACH v_name IN ARRAY ARRAY['agent_activities_created_at_range', 'agent_activities_updated_at_range',
                                  'agent_activities_completed_at_range'] LOOP
        BEGIN
            EXECUTE format('ALTER TABLE agent_activities VALIDATE CONSTRAINT %I', v_name);
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'agent_activities has rows that break %: it stays NOT VALID', v_name;
        END;
    END LOOP;
END;
$$;
