-- migrate:up

-- Indexes for GET /api/activities (search) and for the retention purge.
--
-- Every search is scoped to one organization and ordered by
-- (created_at DESC, id DESC), so each filter that is selective on its own gets
-- an index that starts with (organization_id, <filter>) and then keeps that
-- order: the query walks it newest first and stops at LIMIT. Filters without
-- their own index (category, agent_name, since/until) ride on
-- agent_activities_org_created_idx; session_id has agent_activities_org_session_idx.

CREATE INDEX agent_activities_org_status_created_idx
    ON agent_activities (organization_id, status, created_at DESC, id DESC);
CREATE INDEX agent_activities_org_type_created_idx
    ON agent_activities (organization_id, agent_type, created_at DESC, id DESC);

-- Text search (q): case-insensitive substring of agent_name and message,
-- served by a trigram index on the same expression the query uses.
-- pg_trgm ships with PostgreSQL (contrib) and is a trusted extension (13+):
-- the database owner or any role with CREATE on the database can install it,
-- no superuser needed.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX agent_activities_search_trgm_idx
    ON agent_activities USING gin ((coalesce(agent_name, '') || ' ' || coalesce(message, '')) gin_trgm_ops);

-- Retention: finished activities, oldest completion first.
CREATE INDEX agent_activities_finished_idx
    ON agent_activities (completed_at)
    WHERE status <> 'running';

-- migrate:down

DROP INDEX agent_activities_finished_idx;
DROP INDEX agent_activities_search_trgm_idx;
DROP INDEX agent_activities_org_type_created_idx;
DROP INDEX agent_activities_org_status_created_idx;

-- Drop pg_trgm unless something else in the database uses it.
DO $$
BEGIN
    DROP EXTENSION IF EXISTS pg_trgm;
EXCEPTION WHEN dependent_objects_still_exist THEN
    RAISE NOTICE 'pg_trgm is used by other objects; keeping it';
END;
$$;
