-- migrate:up

-- Formats a timestamp the way the event format promises: UTC, ISO 8601, "Z".
CREATE FUNCTION agent_activity_iso(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char($1 AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- An activity as the HTTP API shows it (camelCase), used by the snapshot,
-- the search API and anyone who wants the same shape from SQL.
CREATE FUNCTION agent_activity_json(a agent_activities) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'id', $1.id,
        'organizationId', $1.organization_id,
        'sessionId', $1.session_id,
        'agentType', $1.agent_type,
        'agentName', $1.agent_name,
        'category', $1.category,
        'status', $1.status,
        'progress', $1.progress,
        'message', $1.message,
        'inputData', $1.input_data,
        'outputData', $1.output_data,
        'error', $1.error,
        'metadata', $1.metadata,
        'createdAt', agent_activity_iso($1.created_at),
        'updatedAt', agent_activity_iso($1.updated_at),
        'completedAt', agent_activity_iso($1.completed_at))
$$;

-- The last seq handed out per organization. Its row lock is what orders the
-- events of one organization by commit.
CREATE TABLE agent_activity_counters (
    organization_id text PRIMARY KEY,
    last_seq        bigint NOT NULL
) WITH (fillfactor = 50);  -- room on the page for HOT updates of busy counters

COMMENT ON TABLE agent_activity_counters IS
    'Last event seq per organization (pgactivity). Never delete rows: replay relies on them.';

-- The event log: per organization, seq starts at 1, has no gaps and follows
-- commit order. payload is the complete event as the stream sends it.
CREATE TABLE agent_activity_events (
    organization_id text        NOT NULL,
    seq             bigint      NOT NULL,
    activity_id     uuid        NOT NULL,
    type            text        NOT NULL,
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT agent_activity_events_pkey PRIMARY KEY (organization_id, seq),
    CONSTRAINT agent_activity_events_type_valid
        CHECK (type IN ('agent_started', 'agent_progress', 'agent_completed', 'agent_failed'))
);

COMMENT ON TABLE agent_activity_events IS
    'Commit-ordered, gapless event log per organization (pgactivity). Written by a trigger only.';

CREATE INDEX agent_activity_events_activity_idx ON agent_activity_events (activity_id, seq);
CREATE INDEX agent_activity_events_created_idx ON agent_activity_events (created_at);

-- Runs at commit (deferred constraint trigger): takes the organization's next
-- seq, appends the event and wakes the listeners. The counter row stays
-- locked only while this transaction commits, so the seq order is the commit
-- order and there are no gaps (a rolled-back transaction never got here).
-- SECURITY DEFINER lets writers hold privileges on agent_activities alone.
CREATE FUNCTION agent_activities_emit_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    v_type text;
    v_data jsonb;
    v_seq  bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_type := 'agent_started';
        v_data := jsonb_build_object('inputData', NEW.input_data, 'metadata', NEW.metadata);
    ELSIF NEW.status IS DISTINCT FROM OLD.status AND NEW.status = 'completed' THEN
        v_type := 'agent_completed';
        v_data := jsonb_build_object('outputData', NEW.output_data);
    ELSIF NEW.status IS DISTINCT FROM OLD.status AND NEW.status = 'failed' THEN
        v_type := 'agent_failed';
        v_data := jsonb_build_object('error', NEW.error);
    ELSE
        v_type := 'agent_progress';
        v_data := jsonb_build_object('message', NEW.message, 'progress', NEW.progress);
    END IF;

    -- Writers of one organization queue here, on a lock that pins no page,
    -- rather than on the counter row: waiters on a row keep its page pinned,
    -- which stops PostgreSQL from pruning the row's old versions, and a busy
    -- counter then bloats and slows with every writer added. Held until this
    -- transaction has committed, exactly like the row lock it replaces as
    -- the point of waiting.
    PERFORM pg_advisory_xact_lock(hashtextextended(NEW.organization_id, 7146));

    -- A plain UPDATE first: cheaper than INSERT ... ON CONFLICT for the usual
    -- case.
    UPDATE agent_activity_counters SET last_seq = last_seq + 1
    WHERE organization_id = NEW.organization_id
    RETURNING last_seq INTO v_seq;
    IF NOT FOUND THEN
        INSERT INTO agent_activity_counters AS c (organization_id, last_seq)
        VALUES (NEW.organization_id, 1)
        ON CONFLICT (organization_id) DO UPDATE SET last_seq = c.last_seq + 1
        RETURNING c.last_seq INTO v_seq;
    END IF;

    INSERT INTO agent_activity_events (organization_id, seq, activity_id, type, payload)
    VALUES (NEW.organization_id, v_seq, NEW.id, v_type, jsonb_build_object(
        'type', v_type,
        'seq', v_seq,
        'activityId', NEW.id,
        'organizationId', NEW.organization_id,
        'sessionId', NEW.session_id,
        'agentType', NEW.agent_type,
        'agentName', NEW.agent_name,
        'category', NEW.category,
        'status', NEW.status,
        'data', v_data,
        'timestamp', agent_activity_iso(NEW.updated_at)));

    -- Tiny payload whatever the row holds: the log has the data.
    PERFORM pg_notify('agent_activity',
                      jsonb_build_object('org', NEW.organization_id, 'seq', v_seq)::text);
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER agent_activities_emit_event
    AFTER INSERT OR UPDATE ON agent_activities
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION agent_activities_emit_event();

-- migrate:down

DROP TRIGGER agent_activities_emit_event ON agent_activities;
DROP FUNCTION agent_activities_emit_event();
DROP TABLE agent_activity_events;
DROP TABLE agent_activity_counters;
DROP FUNCTION agent_activity_json(agent_activities);
DROP FUNCTION agent_activity_iso(timestamptz);
