-- migrate:up

-- The SQL API for writers in any language. Named arguments work:
--   SELECT agent_activity_start(organization_id => 'org-1', agent_type => 'executor');
-- Errors: PA001 forbidden transition, PA002 unknown activity,
-- 23514 (check_violation, constraint agent_activities_progress_range) bad progress.

CREATE FUNCTION agent_activity_start(
    organization_id text,
    agent_type      text,
    agent_name      text  DEFAULT NULL,
    session_id      text  DEFAULT NULL,
    category        text  DEFAULT NULL,
    input_data      jsonb DEFAULT NULL,
    metadata        jsonb DEFAULT NULL
) RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    INSERT INTO agent_activities
        (organization_id, agent_type, agent_name, session_id, category, input_data, metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING id
$$;

-- Locks the activity and checks that it exists and is still running.
CREATE FUNCTION agent_activity_lock_running(id uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    SELECT a.status INTO v_status FROM agent_activities AS a WHERE a.id = $1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'activity % does not exist', $1
            USING ERRCODE = 'PA002';
    END IF;
    IF v_status <> 'running' THEN
        RAISE EXCEPTION 'activity % is already %', $1, v_status
            USING ERRCODE = 'PA001',
                  HINT = 'A finished activity (completed or failed) is final.';
    END IF;
END;
$$;

CREATE FUNCTION agent_activity_progress(
    id       uuid,
    message  text    DEFAULT NULL,
    progress bigint  DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF $3 IS NOT NULL AND $3 NOT BETWEEN 0 AND 100 THEN
        RAISE EXCEPTION 'progress must be between 0 and 100, got %', $3
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'agent_activities_progress_range',
                  TABLE = 'agent_activities';
    END IF;
    PERFORM agent_activity_lock_running($1);
    UPDATE agent_activities AS a
       SET message = coalesce($2, a.message),
           progress = coalesce($3::smallint, a.progress)
     WHERE a.id = $1;
END;
$$;

CREATE FUNCTION agent_activity_complete(
    id          uuid,
    output_data jsonb DEFAULT NULL,
    message     text  DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM agent_activity_lock_running($1);
    UPDATE agent_activities AS a
       SET status = 'completed',
           progress = 100,
           output_data = coalesce($2, a.output_data),
           message = coalesce($3, a.message)
     WHERE a.id = $1;
END;
$$;

CREATE FUNCTION agent_activity_fail(
    id    uuid,
    error text
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM agent_activity_lock_running($1);
    UPDATE agent_activities AS a
       SET status = 'failed',
           error = $2
     WHERE a.id = $1;
END;
$$;

-- migrate:down

DROP FUNCTION agent_activity_fail(uuid, text);
DROP FUNCTION agent_activity_complete(uuid, jsonb, text);
DROP FUNCTION agent_activity_progress(uuid, text, bigint);
DROP FUNCTION agent_activity_lock_running(uuid);
DROP FUNCTION agent_activity_start(text, text, text, text, text, jsonb, jsonb);
