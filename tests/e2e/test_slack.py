"""Slack notifications end to end: the real `serve` process, writes from psql, a fake Slack API.

Exactly one message per activity whatever happens (two servers, a crash between
chat.postMessage and storing its ts, Slack down), updates throttled with the
latest state winning, 429 Retry-After honoured, and the stream unaffected.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import ServerFactory, ServerProcess
from tests.e2e.sse import SSEClient
from tests.fake_slack import CHANNEL, TOKEN, FakeSlack
from tests.helpers import ALLOW_OUT_OF_RANGE_TIMESTAMPS, run_psql

UPDATE_SECONDS = 1.0


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    try:
        yield fake
    finally:
        fake.release()
        fake.stop()


def slack_env(fake: FakeSlack, **extra: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": TOKEN,
        "PGACTIVITY_SLACK_CHANNEL": CHANNEL,
        "PGACTIVITY_SLACK_BASE_URL": fake.base_url,
        "PGACTIVITY_SLACK_UPDATE_SECONDS": str(UPDATE_SECONDS),
        "PGACTIVITY_SLACK_TIMEOUT_SECONDS": "2",
        "PGACTIVITY_SLACK_RETRY_MAX_SECONDS": "1",
        **extra,
    }


def sql(url: str, text: str) -> str:
    return run_psql(url, text).stdout.strip()


def start(url: str, org: str, **columns: str) -> str:
    args = ", ".join(f"{k} => '{v}'" for k, v in {"organization_id": org, "agent_type": "executor", **columns}.items())
    return sql(url, f"SELECT agent_activity_start({args});")


def readyz(srv: ServerProcess) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{srv.base_url}/readyz", timeout=5)
    return response.status_code, response.json()


def wait_slack_status(srv: ServerProcess, slack: FakeSlack, prefix: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def check() -> bool:
        nonlocal seen
        _, seen = readyz(srv)
        return str(seen["checks"].get("slack", "")).startswith(prefix)

    slack.wait_until(check, what=f"readyz slack status {prefix!r} (last: {seen})")
    return seen


def completed_everywhere(slack: FakeSlack, ids: list[str]) -> bool:
    counts = {i: len(slack.messages_of(i)) for i in ids}
    assert max(counts.values()) <= 1, f"more than one message for an activity: {counts}"
    return all("completed" in (slack.final_text(i) or "") for i in ids)


def test_one_message_per_activity_updated_to_completion_and_failure(
    server_factory: ServerFactory, slack: FakeSlack
) -> None:
    srv = server_factory(env=slack_env(slack), start=False)
    before = start(srv.db_url, "org-a", agent_name="before-the-consumer")
    srv.start()
    wait_slack_status(srv, slack, "ok")

    done = start(
        srv.db_url,
        "org-a",
        agent_name="executor-high",
        session_id="ses-456",
        category="ultrabrain",
        input_data='{"prompt": "Implement feature X"}',
    )
    sql(srv.db_url, f"SELECT agent_activity_progress(id => '{done}', message => 'Analyzing codebase', progress => 30);")
    sql(srv.db_url, f"""SELECT agent_activity_complete(id => '{done}', output_data => '{{"filesChanged": 2}}');""")
    failed = start(srv.db_url, "org-b", agent_name="planner")
    sql(srv.db_url, f"SELECT agent_activity_fail(id => '{failed}', error => 'timeout: the model did not answer');")

    slack.wait_until(
        lambda: "completed" in (slack.final_text(done) or "") and "failed" in (slack.final_text(failed) or ""),
        what="final states",
    )
    [message] = slack.messages_of(done)
    assert message.channel == CHANNEL
    for part in ("executor-high", "ultrabrain", "ses-456", "org-a", "Implement feature X"):
        assert part in message.text
    final = slack.final_text(done) or ""
    assert "completed in " in final
    assert "filesChanged" in final

    [message] = slack.messages_of(failed)
    final = slack.final_text(failed) or ""
    assert "failed after " in final
    assert "timeout: the model did not answer" in final

    # An activity from before the consumer ever ran is not posted (PGACTIVITY_SLACK_START=end).
    assert slack.messages_of(before) == []
    assert len([c for c in slack.calls_of("chat.postMessage") if c.status == 200]) == 2
    metrics = httpx.get(f"{srv.base_url}/metrics", timeout=5).text
    assert "pgactivity_slack_messages_posted_total 2.0" in metrics
    assert "pgactivity_slack_ok 1.0" in metrics


def test_progress_burst_is_throttled_and_ends_on_the_final_state(
    server_factory: ServerFactory, slack: FakeSlack
) -> None:
    srv = server_factory(env=slack_env(slack))
    activity = start(srv.db_url, "org-a", agent_name="burst")
    slack.wait_until(lambda: len(slack.messages_of(activity)) == 1, what="the first post")

    burst = "".join(
        f"SELECT agent_activity_progress(id => '{activity}', message => 'step {i}', progress => {i * 2});"
        "SELECT pg_sleep(0.02);\n"
        for i in range(1, 51)
    )
    sql(srv.db_url, burst + f"SELECT agent_activity_complete(id => '{activity}', message => 'all done');")
    slack.wait_until(lambda: "completed" in (slack.final_text(activity) or ""), what="the final update")

    [message] = slack.messages_of(activity)
    assert "all done" in message.updates[-1]
    assert len(message.updates) < 25, f"50 progress events made {len(message.updates)} updates"
    # At most one update per second per message, the post included.
    times = [message.posted_at, *message.update_times]
    gaps = [b - a for a, b in pairwise(times)]
    assert min(gaps) >= UPDATE_SECONDS * 0.9, gaps


def test_two_servers_post_each_activity_once(server_factory: ServerFactory, slack: FakeSlack) -> None:
    first = server_factory(env=slack_env(slack))
    server_factory(env=slack_env(slack))
    slack.latency = 0.2  # both servers are mid-call at once: without the claim they would both post
    script = "".join(
        f"""
        SELECT agent_activity_start(organization_id => 'org-{i % 2}', agent_type => 'executor',
                                    agent_name => 'agent-{i}') AS id \\gset
        SELECT agent_activity_progress(id => :'id', message => 'working', progress => 50);
        SELECT agent_activity_complete(id => :'id');
        SELECT :'id';
        """
        for i in range(10)
    )
    ids = sql(first.db_url, script).split()
    assert len(ids) == 10

    slack.wait_until(lambda: completed_everywhere(slack, ids), what="ten completed messages")
    for activity in ids:
        assert len(slack.messages_of(activity)) == 1
    assert len(slack.snapshot()) == 10
    assert len([c for c in slack.calls_of("chat.postMessage") if c.status == 200]) == 10


def test_slack_outage_then_recovery_posts_everything_once_and_the_stream_is_unaffected(
    server_factory: ServerFactory, slack: FakeSlack
) -> None:
    srv = server_factory(env=slack_env(slack))
    wait_slack_status(srv, slack, "ok")
    client = SSEClient(f"{srv.base_url}/api/activity/stream", srv.token("org-o")).start()
    try:
        # The snapshot must be read before the first write, or that write's events land in it
        # instead of arriving live (the response headers alone come before the snapshot).
        client.wait_for(lambda c: len(c.snapshots()) == 1)

        def write(n: int) -> list[str]:
            ids = []
            for _ in range(n):
                activity = start(srv.db_url, "org-o")
                sql(srv.db_url, f"SELECT agent_activity_progress(id => '{activity}', progress => 50);")
                sql(srv.db_url, f"SELECT agent_activity_complete(id => '{activity}');")
                ids.append(activity)
            return ids

        # Slack answers 500: posts may or may not have landed, as far as pgactivity can tell.
        slack.fail_status = 500
        ids = write(3)
        client.wait_for(lambda c: len(c.live()) >= 9)
        slack.wait_until(lambda: len([c for c in slack.calls if c.status == 500]) >= 3, what="failed calls")
        status, body = readyz(srv)
        assert status == 200
        assert body["checks"]["slack"].startswith("retrying")

        # Slack is gone altogether: connections refused.
        slack.stop()
        ids += write(2)
        client.wait_for(lambda c: len(c.live()) >= 15)
        wait_slack_status(srv, slack, "retrying")
        slack.wait_until(lambda: "cannot connect" in readyz(srv)[1]["checks"]["slack"], what="a refused connection")
        assert [e.type for e in client.live()] == ["agent_started", "agent_progress", "agent_completed"] * 5
        assert readyz(srv)[0] == 200
        assert slack.snapshot() == []

        slack.fail_status = None
        slack.start()
        slack.wait_until(lambda: completed_everywhere(slack, ids), what="every activity posted after the outage")
        for activity in ids:
            assert len(slack.messages_of(activity)) == 1
        assert len(slack.snapshot()) == 5
        wait_slack_status(srv, slack, "ok")
    finally:
        client.stop()


def test_rate_limited_post_waits_for_retry_after(server_factory: ServerFactory, slack: FakeSlack) -> None:
    slack.rate_limit("chat.postMessage", times=2, retry_after=1)
    srv = server_factory(env=slack_env(slack))
    activity = start(srv.db_url, "org-a")
    slack.wait_until(lambda: len(slack.messages_of(activity)) == 1, what="the post after 429s")

    assert [c.status for c in slack.calls_of("chat.postMessage")] == [429, 429, 200]
    assert slack.early_calls == 0  # nobody came back before Retry-After had passed


def test_crash_between_post_and_storing_ts_does_not_post_twice(server_factory: ServerFactory, slack: FakeSlack) -> None:
    slack.hold_posts()  # Slack stores the message, but its answer (the ts) never reaches the server
    crashed = server_factory(env=slack_env(slack))
    activity = start(crashed.db_url, "org-a", agent_name="survivor")
    slack.wait_until(lambda: len(slack.messages_of(activity)) == 1, what="the held post")
    with psycopg.connect(crashed.db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT ts, post_started_at IS NOT NULL FROM agent_activity_slack_messages WHERE activity_id = %s",
            (activity,),
        ).fetchone()
    assert row == (None, True)
    crashed.stop(signal.SIGKILL)
    slack.release()

    sql(crashed.db_url, f"SELECT agent_activity_complete(id => '{activity}', message => 'finished while down');")
    restarted = server_factory(env=slack_env(slack))
    slack.wait_until(lambda: "finished while down" in (slack.final_text(activity) or ""), what="the final update")

    [message] = slack.messages_of(activity)
    assert len(slack.calls_of("chat.postMessage")) == 1
    assert slack.calls_of("conversations.history")
    with psycopg.connect(restarted.db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT ts, post_started_at FROM agent_activity_slack_messages WHERE activity_id = %s", (activity,)
        ).fetchone()
    assert row == (message.ts, None)


def test_bad_token_is_reported_in_readyz_and_the_log_without_failing_readiness(
    server_factory: ServerFactory, slack: FakeSlack
) -> None:
    srv = server_factory(env=slack_env(slack, SLACK_BOT_TOKEN="xoxb-not-the-right-one"))
    body = wait_slack_status(srv, slack, "auth failed")
    assert body["status"] == "ready"
    assert body["checks"]["slack"] == "auth failed: invalid_auth"
    log = srv.log()
    assert "invalid_auth" in log
    assert "SLACK_BOT_TOKEN" in log
    assert "xoxb-not-the-right-one" not in log
    assert slack.calls_of("chat.postMessage") == []


def rejected_metric(srv: ServerProcess, reason: str) -> float:
    for line in httpx.get(f"{srv.base_url}/metrics", timeout=5).text.splitlines():
        if line.startswith(f'pgactivity_slack_messages_rejected_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no pgactivity_slack_messages_rejected_total for {reason}")


def message_state(url: str, activity: str) -> str:
    return sql(url, f"SELECT state FROM agent_activity_slack_messages WHERE activity_id = '{activity}';")


def test_slack_errors_are_sorted_pause_and_retry_retry_a_few_times_or_give_up(
    server_factory: ServerFactory, slack: FakeSlack
) -> None:
    """`rate_limited` (and any code the consumer did not know) used to mark the message rejected for good,
    never posted even after Slack recovered."""
    slack.error_when("org-ratelimited", "rate_limited", times=2)
    slack.error_when("org-accesslimited", "accesslimited", times=1)
    slack.error_when("org-flaky", "an_error_slack_added_later", times=2)
    slack.error_when("org-broken", "an_error_slack_added_later")
    slack.error_when("org-too-long", "msg_too_long")
    srv = server_factory(env=slack_env(slack, PGACTIVITY_SLACK_MAX_ATTEMPTS="3"))
    wait_slack_status(srv, slack, "ok")
    orgs = ["org-ratelimited", "org-accesslimited", "org-flaky", "org-broken", "org-too-long", "org-fine"]
    ids = {org: start(srv.db_url, org) for org in orgs}

    posted = ["org-ratelimited", "org-accesslimited", "org-flaky", "org-fine"]
    slack.wait_until(lambda: all(len(slack.messages_of(ids[org])) == 1 for org in posted), what="posts after errors")
    slack.wait_until(
        lambda: (
            message_state(srv.db_url, ids["org-broken"]) == "rejected"
            and message_state(srv.db_url, ids["org-too-long"]) == "rejected"
        ),
        what="the two messages given up",
    )
    for org in posted:
        assert message_state(srv.db_url, ids[org]) == "active", org

    def posts_of(org: str) -> list[str | None]:
        return [c.error for c in slack.calls_of("chat.postMessage") if org in str(c.params.get("text"))]

    assert posts_of("org-ratelimited") == ["rate_limited", "rate_limited", None]
    assert posts_of("org-flaky") == ["an_error_slack_added_later"] * 2 + [None]
    assert posts_of("org-broken") == ["an_error_slack_added_later"] * 3  # PGACTIVITY_SLACK_MAX_ATTEMPTS
    assert posts_of("org-too-long") == ["msg_too_long"]  # never postable: not tried again
    assert rejected_metric(srv, "attempts") == 1
    assert rejected_metric(srv, "refused") == 1


def test_one_organizations_unreadable_rows_never_stop_another_organizations_messages(
    server_factory: ServerFactory, slack: FakeSlack
) -> None:
    """A row the consumer could not handle (a timestamp from before the limits, JSON nested 3000 levels)
    stopped it for every organization: it retried the same row for ever."""
    srv = server_factory(env=slack_env(slack))
    wait_slack_status(srv, slack, "ok")
    url = srv.db_url
    # Rows as they could be written before the timestamp limits (20261201000002) existed.
    sql(url, ALLOW_OUT_OF_RANGE_TIMESTAMPS)
    unreadable = [
        sql(
            url,
            "INSERT INTO agent_activities (organization_id, agent_type, created_at) "
            f"VALUES ('org-b', 'odd', '{value}') RETURNING id;",
        )
        for value in ("infinity", "10001-01-01")
    ]
    deep = start(url, "org-b", input_data="[" * 3000 + '"deep"' + "]" * 3000)
    fine = start(url, "org-a", agent_name="fine")

    slack.wait_until(lambda: len(slack.messages_of(fine)) == 1, what="the other organization's message")
    slack.wait_until(lambda: len(slack.messages_of(deep)) == 1, what="the deep one, cut where it gets too deep")
    assert "…" in slack.messages_of(deep)[0].text
    slack.wait_until(
        lambda: all(message_state(url, a) == "rejected" for a in unreadable), what="the unreadable rows marked"
    )
    assert rejected_metric(srv, "unhandled") == 2
    assert srv.log().count("cannot make a Slack message of activity") == 2
    assert "Traceback" not in srv.log()


def test_a_post_answered_after_its_timeout_is_looked_up_only_after_the_grace_period(
    server_factory: ServerFactory, slack: FakeSlack
) -> None:
    """Slack may store a post after the call that sent it gave up. The process that sent it looked for it
    at once (it knew its own call had ended), did not find it yet, and posted a second message."""
    srv = server_factory(env=slack_env(slack, PGACTIVITY_SLACK_TIMEOUT_SECONDS="0.5"))
    wait_slack_status(srv, slack, "ok")
    slack.slow_posts(3.0)  # answered, and stored, 3 s after it arrives; the call gives up after 0.5 s
    activity = start(srv.db_url, "org-a", agent_name="slow")
    slack.wait_until(lambda: bool(slack.calls_of("conversations.history")), what="the look in the history")
    with psycopg.connect(srv.db_url, autocommit=True) as conn:
        slack.wait_until(
            lambda: (
                conn.execute(
                    "SELECT ts IS NOT NULL FROM agent_activity_slack_messages WHERE activity_id = %s", (activity,)
                ).fetchone()
                == (True,)
            ),
            what="the message adopted",
        )
    [post] = slack.calls_of("chat.postMessage")
    [look, *_] = slack.calls_of("conversations.history")
    # Not before every call would have been cut (deadline_for(0.5) = 5.5 s; the grace period is 2 s more).
    assert look.received - post.received >= 5.5, (post, look)
    assert len(slack.messages_of(activity)) == 1
    assert sql(srv.db_url, "SELECT count(*) FROM agent_activity_slack_messages WHERE ts IS NOT NULL;") == "1"
