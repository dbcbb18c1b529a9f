-- migrate:up transaction:false

-- Timestamps every writer must keep finite and within a sane range: from the
-- Unix epoch to the year 2200, in UTC. Outside it PostgreSQL still stores the
-- value ('infinity', year 10001, 4713 BC), but what reads it cannot: Python's
-- datetime stops at year 9999 (the search API answered 500 for the whole
-- organization), agent_activity_iso() gives NULL for infinity and drops the
-- era, and the Slack consumer could not render the row. A write outside the
-- range fails with SQLSTATE 23514 naming the constraint. The guard trigger
-- (a BEFORE trigger, run before CHECK constraints) copies created_at into
-- updated_at on insert, so a bad created_at of an INSERT is reported as
-- agent_activities_created_at_range (CHECK constraints are tested in name
-- order); completed_at may be set by a writer, so it is checked too (NULL is
-- fine).
--
-- Existing rows: the constraints are added NOT VALID (a short ACCESS
-- EXCLUSIVE lock, no table scan, and every write from then on is checked),
-- committed, and only then validated, which scans the table under SHARE UPDATE
-- EXCLUSIVE: writers and readers go on meanwhile. If rows from before this
-- migration break the range, validation is skipped with a WARNING and the
-- constraint stays NOT VALID (new writes are still checked); `pgactivity
-- serve` logs a warning at start until it is validated. Fix or delete those
-- rows, then run ALTER TABLE agent_activities VALIDATE CONSTRAINT <name>.
-- Hence transaction:false (dbmate runs each statement as it comes; the
-- explicit COMMIT ends the short lock before the scan), and a first statement
-- that can be run again if a later one fails.

SET lock_timeout = '10s';

ALTER TABLE agent_activities
    DROP CONSTRAINT IF EXISTS agent_activities_created_at_range,
    DROP CONSTRAINT IF EXISTS agent_activities_updated_at_range,
    DROP CONSTRAINT IF EXISTS agent_activities_completed_at_range,
    ADD CONSTRAINT agent_activities_created_at_range
        CHECK (created_at >= '1970-01-01 00:00:00+00' AND created_at < '2200-01-01 00:00:00+00') NOT VALID,
    ADD CONSTRAINT agent_activities_updated_at_range
        CHECK (updated_at >= '1970-01-01 00:00:00+00' AND updated_at < '2200-01-01 00:00:00+00') NOT VALID,
    ADD CONSTRAINT agent_activities_completed_at_range
        CHECK (completed_at >= '1970-01-01 00:00:00+00' AND completed_at < '2200-01-01 00:00:00+00') NOT VALID;

COMMIT;

RESET lock_timeout;

DO $$
DECLARE
    v_name text;
BEGIN
    FOREACH v_name IN ARRAY ARRAY['agent_activities_created_at_range', 'agent_activities_updated_at_range',
                                  'agent_activities_completed_at_range'] LOOP
        BEGIN
            EXECUTE format('ALTER TABLE agent_activities VALIDATE CONSTRAINT %I', v_name);
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'agent_activities has rows from before this migration that break %: new writes are '
                          'checked, those rows are not; fix or delete them, then run '
                          'ALTER TABLE agent_activities VALIDATE CONSTRAINT %', v_name, v_name;
        END;
    END LOOP;
END;
$$;

-- migrate:down

ALTER TABLE agent_activities
    DROP CONSTRAINT agent_activities_completed_at_range,
    DROP CONSTRAINT agent_activities_updated_at_range,
    DROP CONSTRAINT agent_activities_created_at_range;
