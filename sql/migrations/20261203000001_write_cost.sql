-- migrate:up

-- What a start or a progress update costs PostgreSQL's CPU, counted rather than
-- timed (issue 12, rows d, g, h): valgrind's callgrind on a single-user backend
-- running 1,000 prepared agent_activity_start calls (bench/instructions.py),
-- 586,000 instructions a write before this migration, 540,200 after (-8 %);
-- agent_activity_progress 564,100 -> 516,300 (-8 %). The typical app's INSERT
-- with its NOTIFY trigger is 329,200. PL/pgSQL sets up every expression it
-- evaluates again in each transaction (its simple-expression state lives for
-- one transaction), and runs a PERFORM as a whole query through the executor,
-- so what a one-write transaction pays for is mostly the number of statements
-- and expressions its triggers go through, not what they compute:
--
-- 1. The emit trigger takes the organization's lock and sends its NOTIFY as
--    expressions rather than PERFORM queries, builds the NOTIFY's head once,
--    reads its size limit in one expression, and tests the batch case
--    (several events of one organization in one transaction) once: -33,000.
-- 2. agent_activity_counters_settle fires on UPDATE OF organization_id, which
--    only the emit trigger's batch case lists (SET organization_id =
--    organization_id, a HOT update: the value does not change), instead of on
--    every update WHEN last_seq did not change: PostgreSQL read the WHEN
--    clause back from its stored form at every counter update: -14,000.
-- 3. The guard trigger tests the rules of the CHECK constraints it replaced as
--    one conjunction IS FALSE (false when one rule is false; NULL, which a
--    CHECK lets pass, when none is false and one is unknown) rather than
--    coalescing each rule: -10,000.
--
-- Nothing a writer or a reader sees changes: the same events, seqs, payloads,
-- errors and NOTIFY payloads (tests/integration, tests/e2e).

DROP TRIGGER agent_activity_counters_settle ON agent_activity_counters;
CREATE CONSTRAINT TRIGGER agent_activity_counters_settle
    AFTER UPDATE OF organization_id ON agent_activity_counters
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    EXECUTE FUNCTION agent_activity_counters_settle();

CREATE OR REPLACE FUNCTION agent_activities_emit_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
    v_type  text;
    v_data  jsonb;
    v_seq   bigint;
    v_first bigint;
    v_event jsonb;
    v_head  text;
    v_note  text;
    v_at    timestamptz;
    v_void  text;  -- what the void functions return: called as expressions, not PERFORM queries
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
    v_void := pg_advisory_xact_lock(hashtextextended(NEW.organization_id, 7146));

    -- The usual case, this transaction's first event of the organization:
    -- take the next seq from the counter row.
    UPDATE agent_activity_counters AS c SET last_seq = c.last_seq + 1
    WHERE c.organization_id = NEW.organization_id AND NOT c.xmin = pg_current_xact_id()::xid
    RETURNING c.last_seq, c.last_seq INTO v_seq, v_first;
    IF NOT FOUND THEN
        SELECT c.last_seq INTO v_first FROM agent_activity_counters AS c
        WHERE c.organization_id = NEW.organization_id;
        IF NOT FOUND THEN
            INSERT INTO agent_activity_counters AS c (organization_id, last_seq)
            VALUES (NEW.organization_id, 1)
            ON CONFLICT (organization_id) DO UPDATE SET last_seq = c.last_seq + 1
            RETURNING c.last_seq, c.last_seq INTO v_seq, v_first;
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

    IF v_seq <> v_first THEN  -- the batch case
        IF v_seq = v_first + 1 THEN
            -- Queues agent_activity_counters_settle (after this event is in
            -- the log: under SET CONSTRAINTS ALL IMMEDIATE it fires at once).
            UPDATE agent_activity_counters AS c SET organization_id = c.organization_id
            WHERE c.organization_id = NEW.organization_id;
        END IF;
        IF v_seq - v_first >= 100 THEN
            -- The same payload for the rest of this batch: PostgreSQL keeps one.
            v_void := pg_notify('agent_activity', '{"org": ' || to_json(NEW.organization_id)::text || '}');
            RETURN NULL;
        END IF;
    END IF;

    -- The event rides in the NOTIFY when the whole payload fits under
    -- pgactivity.notify_max_bytes (default 7500, at most 7999; 0: never).
    -- "at": when the event was logged (agent_activity_events.created_at), for the lag metric.
    v_head := '{"org": ' || to_json(NEW.organization_id)::text || ', "seq": ' || v_seq;
    v_note := v_head || ', "at": ' || extract(epoch FROM v_at) || ', "event": ' || v_event::text || '}';
    IF octet_length(v_note) > (CASE WHEN current_setting('pgactivity.notify_max_bytes', true) ~ '^[0-9]{1,9}$'
                                    THEN least(current_setting('pgactivity.notify_max_bytes')::integer, 7999)
                                    ELSE 7500 END) THEN
        v_note := v_head || '}';
    END IF;
    v_void := pg_notify('agent_activity', v_note);
    RETURN NULL;
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

    -- The rules of the CHECK constraints this replaces (migration 20261202000001), as one
    -- conjunction: false when a rule is false, NULL (a pass, as in a CHECK) when one is unknown.
    IF (NEW.status IN ('running', 'completed', 'failed')
        AND NEW.progress BETWEEN 0 AND 100
        AND char_length(NEW.organization_id) BETWEEN 1 AND 200
        AND char_length(NEW.agent_type) BETWEEN 1 AND 200
        AND NEW.created_at >= '1970-01-01 00:00:00+00' AND NEW.created_at < '2200-01-01 00:00:00+00'
        AND NEW.updated_at >= '1970-01-01 00:00:00+00' AND NEW.updated_at < '2200-01-01 00:00:00+00'
        AND NEW.completed_at >= '1970-01-01 00:00:00+00' AND NEW.completed_at < '2200-01-01 00:00:00+00') IS FALSE THEN
        PERFORM agent_activities_check_violation(NEW);
    END IF;
    RETURN NEW;
END;
$$;

-- migrate:down

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
ALTER FUNCTION agent_activities_emit_event() SET enable_seqscan = off;

DROP TRIGGER agent_activity_counters_settle ON agent_activity_counters;
CREATE CONSTRAINT TRIGGER agent_activity_counters_settle
    AFTER UPDATE ON agent_activity_counters
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (NEW.last_seq = OLD.last_seq)
    EXECUTE FUNCTION agent_activity_counters_settle();
