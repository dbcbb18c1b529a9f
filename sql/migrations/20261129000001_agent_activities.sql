-- migrate:up

-- One row per agent run. Every read is scoped by organization_id.
CREATE TABLE agent_activities (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id text NOT NULL,
    session_id      text,
    agent_type      text NOT NULL,
    agent_name      text,
    category        text,
    status          text NOT NULL DEFAULT 'running',
    progress        smallint,
    message         text,
    input_data      jsonb,
    output_data     jsonb,
    metadata        jsonb,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    CONSTRAINT agent_activities_status_valid
        CHECK (status IN ('running', 'completed', 'failed')),
    CONSTRAINT agent_activities_progress_range
        CHECK (progress BETWEEN 0 AND 100),
    -- The organization id travels in every NOTIFY payload, which PostgreSQL
    -- caps at 8000 bytes; 200 characters keeps the payload small whatever it holds.
    CONSTRAINT agent_activities_organization_id_valid
        CHECK (char_length(organization_id) BETWEEN 1 AND 200),
    CONSTRAINT agent_activities_agent_type_valid
        CHECK (char_length(agent_type) BETWEEN 1 AND 200)
);

COMMENT ON TABLE agent_activities IS
    'One row per agent run. Inserts and updates become events in agent_activity_events (pgactivity).';

-- Snapshot and search: newest activities of one organization.
CREATE INDEX agent_activities_org_created_idx
    ON agent_activities (organization_id, created_at DESC, id DESC);
CREATE INDEX agent_activities_org_session_idx
    ON agent_activities (organization_id, session_id, created_at DESC)
    WHERE session_id IS NOT NULL;

-- State rules that a CHECK constraint cannot express because they compare
-- the old row with the new one. Custom SQLSTATEs (class PA) let clients tell
-- them apart: PA001 forbidden transition, PA003 immutable column.
CREATE FUNCTION agent_activities_guard() RETURNS trigger
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

CREATE TRIGGER agent_activities_guard
    BEFORE INSERT OR UPDATE ON agent_activities
    FOR EACH ROW EXECUTE FUNCTION agent_activities_guard();

-- migrate:down

DROP TABLE agent_activities;
DROP FUNCTION agent_activities_guard();
