-- migrate:up

-- The hot path of every write (issue 12):
--
-- 1. The NOTIFY carries the event when it fits, so the streamer delivers it
--    without reading the log: {"org": ..., "seq": N, "at": <epoch of
--    created_at>, "event": {...}}, the event exactly as the log holds it. Larger
--    events still carry {"org", "seq"} only. The limit is the setting
--    pgactivity.notify_max_bytes (default 7500, at most 7999: PostgreSQL's
--    payload limit is 8000 bytes), e.g.
--        ALTER DATABASE app SET pgactivity.notify_max_bytes = 2000;
--    0 sends every event by reference, as before.
-- 2. One transaction writing many events of one organization (an import, a
--    backfill) costs linear time: its first event takes the next seq from the
--    counter row as before, the others follow the transaction's own newest
--    event in the log, and the counter row is brought up to date once at the
--    end (agent_activity_counters_settle). Updating the row for every event
--    made each update walk all the versions the transaction had made
--    (quadratic: 200k rows took 270 s). Past its first 100 events of an
--    organization, such a transaction notifies {"org"} alone, which
--    PostgreSQL folds into one notification: the streamer reads the rest from
--    the log in batches.
-- 3. The writer functions are PL/pgSQL, whose plans are cached per session
--    (PostgreSQL before 18 plans a SQL function's body at every call), and
--    the progress/complete/fail functions update the row once instead of
--    locking it first.
-- 4. The event log loses its created_at index (one index write per event):
--    retention walks each organization's log by seq instead; the trigram
--    index of search covers finished activities only (see below).

DROP INDEX agent_activity_events_created_idx;

-- The trigram index of search holds finished activities only: a start no
-- longer writes it (it was a third of the start's WAL), nor does a progress
-- update, which changes the message of a running activity each time. Search
-- finds running activities, which are few, through the status index
-- (search.py). The category joins the name and the message, so that the
-- category filter has an index for its rare values too (q still matches the
-- name and the message only). Rebuilding it takes a while on
-- a large table.
DROP INDEX agent_activities_search_trgm_idx;
CREATE INDEX agent_activities_search_trgm_idx
    ON agent_activities USING gin (
        (coalesce(agent_name, '') || ' ' || coalesce(message, '') || ' ' || coalesce(category, '')) gin_trgm_ops)
    WHERE status <> 'running';

-- agentName: a name a nightly job uses a hundred times among 200k rows was a
-- walk of the whole organization (110-140 ms); names share trigrams
-- (executor-1, executor-2 ...), so the trigram index is no help for them.
CREATE INDEX agent_activities_org_name_created_idx
    ON agent_activities (organization_id, agent_name, created_at DESC, id DESC)
    WHERE agent_name IS NOT NULL;

CREATE OR REPLACE FUNCTION agent_activities_emit_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    v_type  text;
    v_data  jsonb;
    v_seq   bigint;
    v_first bigint;
    v_event jsonb;
    v_head  text;
    v_note  text;
    v_max   text;
    v_at    timestamptz;
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
    -- which stops PostgreSQL from pruning the row's old versions. Held until
    -- this transaction has committed: seq order is commit order.
    PERFORM pg_advisory_xact_lock(hashtextextended(NEW.organization_id, 7146));

    -- The usual case, this transaction's first event of the organization:
    -- take the next seq from the counter row.
    UPDATE agent_activity_counters AS c SET last_seq = c.last_seq + 1
    WHERE c.organization_id = NEW.organization_id AND NOT c.xmin = pg_current_xact_id()::xid
    RETURNING c.last_seq INTO v_seq;
    IF FOUND THEN
        v_first := v_seq;
    ELSE
        SELECT c.last_seq INTO v_first FROM agent_activity_counters AS c
        WHERE c.organization_id = NEW.organization_id;
        IF NOT FOUND THEN
            INSERT INTO agent_activity_counters AS c (organization_id, last_seq)
            VALUES (NEW.organization_id, 1)
            ON CONFLICT (organization_id) DO UPDATE SET last_seq = c.last_seq + 1
            RETURNING c.last_seq INTO v_seq;
            v_first := v_seq;
        ELSE
            -- This transaction already took a seq of this organization (and
            -- holds its lock): the next one follows its own newest event. The
            -- counter row is brought up to date once, by
            -- agent_activity_counters_settle, after every event of this
            -- batch, instead of once per event: updating one row over and
            -- over in one transaction makes each update walk all the
            -- versions before it.
            SELECT e.seq + 1 INTO v_seq FROM agent_activity_events AS e
            WHERE e.organization_id = NEW.organization_id
            ORDER BY e.seq DESC LIMIT 1;
            v_seq := greatest(v_seq, v_first + 1);
        END IF;
    END IF;

    v_at := clock_timestamp();  -- under the organization's lock: created_at follows seq
    v_event := jsonb_build_object(
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
        'timestamp', agent_activity_iso(NEW.updated_at));
    INSERT INTO agent_activity_events (organization_id, seq, activity_id, type, payload, created_at)
    VALUES (NEW.organization_id, v_seq, NEW.id, v_type, v_event, v_at);
    IF v_seq = v_first + 1 THEN
        -- Queues agent_activity_counters_settle (after this event is in the log:
        -- under SET CONSTRAINTS ALL IMMEDIATE it fires at once).
        UPDATE agent_activity_counters AS c SET last_seq = c.last_seq
        WHERE c.organization_id = NEW.organization_id;
    END IF;

    v_head := '{"org": ' || to_json(NEW.organization_id)::text;
    IF v_seq - v_first >= 100 THEN
        -- The same payload for the rest of this batch: PostgreSQL keeps one.
        PERFORM pg_notify('agent_activity', v_head || '}');
        RETURN NULL;
    END IF;
    v_head := v_head || ', "seq": ' || v_seq;
    v_max := current_setting('pgactivity.notify_max_bytes', true);
    IF v_max IS NULL OR v_max !~ '^[0-9]{1,9}$' THEN
        v_max := '7500';
    END IF;
    IF v_max::integer > 0 THEN
        -- "at": when the event was logged (agent_activity_events.created_at), for the lag metric.
        v_note := v_head || ', "at": ' || extract(epoch FROM v_at) || ', "event": ' || v_event::text || '}';
        IF octet_length(v_note) > least(v_max::integer, 7999) THEN
            v_note := NULL;
        END IF;
    END IF;
    PERFORM pg_notify('agent_activity', coalesce(v_note, v_head || '}'));
    RETURN NULL;
END;
$$;

-- The counter of an organization that one transaction gave several events:
-- the update that leaves last_seq alone (above) queues this, and since it is
-- queued while the deferred event triggers run, PostgreSQL fires it after all
-- of them: once per organization and transaction.
CREATE FUNCTION agent_activity_counters_settle() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    -- Only a real change: an update that left last_seq alone would queue this again.
    UPDATE agent_activity_counters AS c SET last_seq = e.seq
    FROM (SELECT e.seq FROM agent_activity_events AS e
          WHERE e.organization_id = NEW.organization_id
          ORDER BY e.seq DESC LIMIT 1) AS e
    WHERE c.organization_id = NEW.organization_id AND c.last_seq < e.seq;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER agent_activity_counters_settle
    AFTER UPDATE ON agent_activity_counters
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (NEW.last_seq = OLD.last_seq)
    EXECUTE FUNCTION agent_activity_counters_settle();

-- PL/pgSQL: the INSERT's plan is cached for the session.
CREATE OR REPLACE FUNCTION agent_activity_start(
    organization_id text,
    agent_type      text,
    agent_name      text  DEFAULT NULL,
    session_id      text  DEFAULT NULL,
    category        text  DEFAULT NULL,
    input_data      jsonb DEFAULT NULL,
    metadata        jsonb DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_id uuid;
BEGIN
    INSERT INTO agent_activities AS a
        (organization_id, agent_type, agent_name, session_id, category, input_data, metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING a.id INTO v_id;
    RETURN v_id;
END;
$$;

-- Why a running-only UPDATE matched nothing: PA002 unknown id, PA001 finished.
CREATE FUNCTION agent_activity_not_running(id uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    SELECT a.status INTO v_status FROM agent_activities AS a WHERE a.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'activity % does not exist', $1
            USING ERRCODE = 'PA002';
    END IF;
    RAISE EXCEPTION 'activity % is already %', $1, v_status
        USING ERRCODE = 'PA001',
              HINT = 'A finished activity (completed or failed) is final.';
END;
$$;

CREATE OR REPLACE FUNCTION agent_activity_progress(
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
    UPDATE agent_activities AS a
       SET message = coalesce($2, a.message),
           progress = coalesce($3::smallint, a.progress)
     WHERE a.id = $1 AND a.status = 'running';
    IF NOT FOUND THEN
        PERFORM agent_activity_not_running($1);
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION agent_activity_complete(
    id          uuid,
    output_data jsonb DEFAULT NULL,
    message     text  DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agent_activities AS a
       SET status = 'completed',
           progress = 100,
           output_data = coalesce($2, a.output_data),
           message = coalesce($3, a.message)
     WHERE a.id = $1 AND a.status = 'running';
    IF NOT FOUND THEN
        PERFORM agent_activity_not_running($1);
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION agent_activity_fail(
    id    uuid,
    error text
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agent_activities AS a
       SET status = 'failed',
           error = $2
     WHERE a.id = $1 AND a.status = 'running';
    IF NOT FOUND THEN
        PERFORM agent_activity_not_running($1);
    END IF;
END;
$$;

-- A field too large for a snapshot that must stay small: stored in more than
-- max_field_bytes, or compressed (PostgreSQL compresses only values of about
-- 2 kB and more, and a value that compresses well is small on disk and large
-- on the wire). Neither test reads the value itself.
CREATE FUNCTION agent_activity_large(value anyelement, max_field_bytes integer) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(pg_column_size($1) > $2 OR pg_column_compression($1) IS NOT NULL, false)
$$;

-- An activity for a snapshot or a search page that must stay small: each of
-- its large fields (inputData, outputData, metadata, message, error) is null
-- and named in "truncated" (absent when nothing was cut); with nothing to cut
-- it is agent_activity_json exactly. GET /api/activities/{id} has the whole
-- row. One expression, so that PostgreSQL inlines it into the query.
CREATE FUNCTION agent_activity_json_slim(a agent_activities, max_field_bytes integer)
RETURNS jsonb
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
        'message', CASE WHEN agent_activity_large($1.message, $2) THEN NULL ELSE $1.message END,
        'inputData', CASE WHEN agent_activity_large($1.input_data, $2) THEN NULL ELSE $1.input_data END,
        'outputData', CASE WHEN agent_activity_large($1.output_data, $2) THEN NULL ELSE $1.output_data END,
        'error', CASE WHEN agent_activity_large($1.error, $2) THEN NULL ELSE $1.error END,
        'metadata', CASE WHEN agent_activity_large($1.metadata, $2) THEN NULL ELSE $1.metadata END,
        'createdAt', agent_activity_iso($1.created_at),
        'updatedAt', agent_activity_iso($1.updated_at),
        'completedAt', agent_activity_iso($1.completed_at))
    || CASE WHEN agent_activity_large($1.input_data, $2) OR agent_activity_large($1.output_data, $2)
              OR agent_activity_large($1.metadata, $2) OR agent_activity_large($1.message, $2)
              OR agent_activity_large($1.error, $2)
       THEN jsonb_build_object('truncated', to_jsonb(array_remove(ARRAY[
           CASE WHEN agent_activity_large($1.input_data, $2) THEN 'inputData' END,
           CASE WHEN agent_activity_large($1.output_data, $2) THEN 'outputData' END,
           CASE WHEN agent_activity_large($1.metadata, $2) THEN 'metadata' END,
           CASE WHEN agent_activity_large($1.message, $2) THEN 'message' END,
           CASE WHEN agent_activity_large($1.error, $2) THEN 'error' END], NULL)))
       ELSE '{}'::jsonb END
$$;

-- migrate:down

DROP FUNCTION agent_activity_json_slim(agent_activities, integer);
DROP FUNCTION agent_activity_large(anyelement, integer);
DROP TRIGGER agent_activity_counters_settle ON agent_activity_counters;
DROP FUNCTION agent_activity_counters_settle();

CREATE OR REPLACE FUNCTION agent_activity_fail(
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

CREATE OR REPLACE FUNCTION agent_activity_complete(
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

CREATE OR REPLACE FUNCTION agent_activity_progress(
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

DROP FUNCTION agent_activity_not_running(uuid);

DROP FUNCTION agent_activity_start(text, text, text, text, text, jsonb, jsonb);
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

CREATE OR REPLACE FUNCTION agent_activities_emit_event() RETURNS trigger
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

CREATE INDEX agent_activity_events_created_idx ON agent_activity_events (created_at);

DROP INDEX agent_activities_org_name_created_idx;
DROP INDEX agent_activities_search_trgm_idx;
CREATE INDEX agent_activities_search_trgm_idx
    ON agent_activities USING gin ((coalesce(agent_name, '') || ' ' || coalesce(message, '')) gin_trgm_ops);
