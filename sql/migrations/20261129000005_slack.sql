-- migrate:up

-- The Slack consumer of `pgactivity serve` (SLACK_BOT_TOKEN + PGACTIVITY_SLACK_CHANNEL).
-- Its state lives here, not in a process, so that several servers and restarts post
-- exactly one message per activity:
--   agent_activity_slack_consumer  when the consumer first ran (one row);
--   agent_activity_slack_cursors   how far it has read each organization's event log;
--   agent_activity_slack_messages  one row per activity it posts: the Slack ts and what
--                                  Slack shows versus what it should show.

CREATE TABLE agent_activity_slack_consumer (
    id          boolean     PRIMARY KEY DEFAULT true,
    started_at  timestamptz NOT NULL DEFAULT now(),
    start_from  text        NOT NULL,
    CONSTRAINT agent_activity_slack_consumer_single CHECK (id),
    CONSTRAINT agent_activity_slack_consumer_start_from_valid CHECK (start_from IN ('end', 'beginning'))
);

COMMENT ON TABLE agent_activity_slack_consumer IS
    'When the Slack consumer first ran (pgactivity). Organizations with events before that start at start_from.';

CREATE TABLE agent_activity_slack_cursors (
    organization_id text        PRIMARY KEY,
    last_seq        bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT agent_activity_slack_cursors_last_seq_valid CHECK (last_seq >= 0)
);

COMMENT ON TABLE agent_activity_slack_cursors IS
    'Last event seq per organization the Slack consumer has taken into agent_activity_slack_messages (pgactivity).';

CREATE TABLE agent_activity_slack_messages (
    activity_id     uuid        PRIMARY KEY REFERENCES agent_activities (id) ON DELETE CASCADE,
    organization_id text        NOT NULL,
    channel         text        NOT NULL,
    ts              text,
    state           text        NOT NULL DEFAULT 'active',
    started_seq     bigint      NOT NULL,
    wanted_seq      bigint      NOT NULL,
    sent_seq        bigint      NOT NULL DEFAULT 0,
    sent_hash       text,
    sent_at         timestamptz,
    post_started_at timestamptz,
    post_started_by text,
    attempts        integer     NOT NULL DEFAULT 0,
    retry_at        timestamptz,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT agent_activity_slack_messages_state_valid CHECK (state IN ('active', 'rejected'))
);

COMMENT ON TABLE agent_activity_slack_messages IS
    'One Slack message per activity (pgactivity). ts is set once chat.postMessage answered; post_started_at '
    'without ts means a post may have landed (the consumer looks for it before posting again).';
COMMENT ON COLUMN agent_activity_slack_messages.wanted_seq IS
    'Latest event of the activity taken from the log; Slack shows the activity as of sent_seq.';

-- The consumer's work list: messages to post or to bring up to date.
CREATE INDEX agent_activity_slack_messages_pending_idx
    ON agent_activity_slack_messages (created_at)
    WHERE state = 'active' AND (ts IS NULL OR sent_seq < wanted_seq);

-- migrate:down

DROP TABLE agent_activity_slack_messages;
DROP TABLE agent_activity_slack_cursors;
DROP TABLE agent_activity_slack_consumer;
