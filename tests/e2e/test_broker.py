"""Broker mode: several `serve` processes on one database and one real nats-server.

Only the relay LISTENs on PostgreSQL; every process gets its organizations'
events from NATS, checks seq continuity and reads the log on a gap. Every
client on every process gets every event of its organization exactly once,
in order: under concurrent writers, when the relay is killed, while NATS is
stopped and after it is back, and when a client moves to another process
with Last-Event-ID. Slack posts once per activity.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.e2e.conftest import NatsServer, ServerFactory, ServerProcess
from tests.e2e.prom import scrape, value
from tests.e2e.sse import SSEClient
from tests.e2e.test_slack import completed_everywhere, slack_env, sql
from tests.e2e.writers import Writer, assert_exactly, last_seq, wait_until
from tests.fake_slack import FakeSlack

STREAM = "/api/activity/stream"
ORGS = ("org-north", "org-south.with dots*and>wildcards")


def broker(nats: NatsServer, **extra: str) -> dict[str, str]:
    return {"PGACTIVITY_NATS_URL": nats.url, **extra}


def is_relay(server: ServerProcess) -> bool:
    try:
        return value(scrape(server), "pgactivity_relay_active") == 1
    except httpx.HTTPError:
        return False


def the_relay(servers: list[ServerProcess], timeout: float = 15) -> ServerProcess:
    found: list[ServerProcess] = []

    def one() -> bool:
        found[:] = [s for s in servers if is_relay(s)]
        return len(found) == 1

    wait_until(one, timeout=timeout, what="exactly one relay")
    return found[0]


def relay_backends(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name IN ('pgactivity-listener', 'pgactivity-relay-candidate') ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


def clients_on(servers: list[ServerProcess], per_server: int = 1) -> Iterator[tuple[str, SSEClient]]:
    for server in servers:
        for org in ORGS:
            for _ in range(per_server):
                client = SSEClient(f"{server.base_url}{STREAM}", server.token(org)).start()
                yield org, client


def wait_all(clients: list[tuple[str, SSEClient]], url: str, timeout: float = 60) -> dict[str, int]:
    final = {org: last_seq(url, org) for org in ORGS}
    for org, client in clients:
        client.wait_for(lambda c, n=final[org]: len(c.live()) >= n, timeout=timeout)
    time.sleep(0.3)  # anything more would be a repeat
    return final


def test_every_client_of_every_process_gets_every_event_once_and_only_the_relay_listens(
    server_factory: ServerFactory, nats_server: NatsServer
) -> None:
    servers = [server_factory(env=broker(nats_server)) for _ in range(3)]
    relay = the_relay(servers)
    wait_until(lambda: len(relay_backends(relay.db_url)) == 3, what="three candidates")
    assert relay_backends(relay.db_url) == ["pgactivity-listener"] + ["pgactivity-relay-candidate"] * 2
    clients = list(clients_on(servers, per_server=2))
    try:
        for _, client in clients:
            client.wait_for(lambda c: len(c.snapshots()) == 1)
        writers = [
            Writer(relay.db_url, org, threads=2, total=60, payload_bytes=n).start()
            for org, n in zip(ORGS, (0, 9000), strict=True)
        ]  # the second organization's starts are too large for NOTIFY
        for writer in writers:
            writer.join()
        final = wait_all(clients, relay.db_url)
    finally:
        for _, client in clients:
            client.stop()
    for org, client in clients:
        assert_exactly(client.seqs(), 1, final[org])
        assert {e.data["organizationId"] for e in client.live()} == {org}
    # Still one LISTEN backend, and the events came through NATS, not a LISTEN per process.
    assert relay_backends(relay.db_url) == ["pgactivity-listener"] + ["pgactivity-relay-candidate"] * 2
    for server in servers:
        samples = scrape(server)
        assert (value(samples, "pgactivity_nats_messages_total") or 0) > 0
        notifications = value(samples, "pgactivity_listener_notifications_total") or 0
        if server is relay:
            assert notifications > 0
        else:
            assert notifications == 0


def test_the_relay_killed_another_takes_over_and_no_client_loses_or_repeats_an_event(
    server_factory: ServerFactory, nats_server: NatsServer
) -> None:
    servers = [server_factory(env=broker(nats_server)) for _ in range(3)]
    relay = the_relay(servers)
    others = [s for s in servers if s is not relay]
    clients = list(clients_on(others))
    writers: list[Writer] = []
    try:
        for _, client in clients:
            client.wait_for(lambda c: len(c.snapshots()) == 1)
        writers = [Writer(relay.db_url, org, threads=2, pause=0.01).start() for org in ORGS]
        wait_until(lambda: all(len(c.live()) >= 20 for _, c in clients), what="events flowing")
        relay.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        successor = the_relay(others, timeout=30)
        took_over = time.monotonic() - killed_at
        final_before = {org: last_seq(successor.db_url, org) for org in ORGS}
        wait_until(
            lambda: all(len(c.live()) >= final_before[org] + 10 for org, c in clients), what="events after takeover"
        )
        for writer in writers:
            writer.stop()
        final = wait_all(clients, successor.db_url)
    finally:
        for writer in writers:
            writer.stop()
        for _, client in clients:
            client.stop()
    for org, client in clients:
        assert_exactly(client.seqs(), 1, final[org])
    assert took_over < 15, f"no relay for {took_over:.1f}s"
    assert relay_backends(successor.db_url) == ["pgactivity-listener", "pgactivity-relay-candidate"]


def test_nats_stopped_streams_go_on_from_the_log_and_resume_exactly_when_it_is_back(
    server_factory: ServerFactory, nats_server: NatsServer
) -> None:
    servers = [server_factory(env=broker(nats_server)) for _ in range(2)]
    the_relay(servers)
    clients = list(clients_on(servers))
    url = servers[0].db_url
    try:
        for _, client in clients:
            client.wait_for(lambda c: len(c.snapshots()) == 1)
        for org in ORGS:
            Writer(url, org, total=10).start().join()
        wait_all(clients, url)

        nats_server.stop()
        for server in servers:
            wait_until(lambda s=server: httpx.get(f"{s.base_url}/readyz").json()["checks"]["nats"] == "disconnected")
            ready = httpx.get(f"{server.base_url}/readyz")
            assert ready.status_code == 200  # the streams go on: no reason to leave the load balancer
            assert value(scrape(server), "pgactivity_nats_connected") == 0
        for org in ORGS:
            Writer(url, org, total=10).start().join()
        wait_all(clients, url)  # from the log, read every second while NATS is away

        nats_server.start()
        for server in servers:
            wait_until(lambda s=server: value(scrape(s), "pgactivity_nats_connected") == 1, what="NATS back")
        for org in ORGS:
            Writer(url, org, total=10).start().join()
        final = wait_all(clients, url)
    finally:
        for _, client in clients:
            client.stop()
    for org, client in clients:
        assert_exactly(client.seqs(), 1, final[org])


def test_a_client_moves_to_another_process_with_last_event_id(
    server_factory: ServerFactory, nats_server: NatsServer
) -> None:
    first, second = (server_factory(env=broker(nats_server)) for _ in range(2))
    org = ORGS[1]
    client = SSEClient(f"{first.base_url}{STREAM}", first.token(org)).start()
    client.wait_for(lambda c: len(c.snapshots()) == 1)
    writer = Writer(first.db_url, org, threads=2, pause=0.005).start()
    moved: SSEClient | None = None
    try:
        client.wait_for(lambda c: len(c.live()) >= 15)
        client.stop()
        moved = SSEClient(f"{second.base_url}{STREAM}", second.token(org), last_event_id=client.last_event_id)
        moved.start()
        moved.wait_for(lambda c: len(c.live()) >= 15)
        writer.stop()
        final = last_seq(first.db_url, org)
        moved.wait_for(lambda c: c.live()[-1].seq >= final if c.live() else False)
        time.sleep(0.3)
    finally:
        writer.stop()
        client.stop()
        if moved is not None:
            moved.stop()
    assert moved.snapshots() == []  # a replay, not a snapshot
    assert_exactly(client.seqs() + moved.seqs(), 1, final)


def test_processes_on_different_nodes_of_a_nats_cluster_get_every_event_once(
    server_factory: ServerFactory, nats_cluster: list[NatsServer]
) -> None:
    """As compose.yaml runs it: each process lists every node and talks to one of them; here each is
    given another node first (and the relay's node is stopped halfway), so the events cross routes."""
    urls = [node.url for node in nats_cluster]
    servers = [
        server_factory(env={"PGACTIVITY_NATS_URL": ",".join(urls[i:] + urls[:i])}) for i in range(len(nats_cluster))
    ]
    relay = the_relay(servers)
    clients = list(clients_on(servers))
    try:
        for _, client in clients:
            client.wait_for(lambda c: len(c.snapshots()) == 1)
        for org in ORGS:
            Writer(relay.db_url, org, total=20).start().join()
        wait_all(clients, relay.db_url)
        nats_cluster[0].stop()  # the processes on it move to the other nodes
        for org in ORGS:
            Writer(relay.db_url, org, total=20).start().join()
        final = wait_all(clients, relay.db_url)
    finally:
        for _, client in clients:
            client.stop()
    for org, client in clients:
        assert_exactly(client.seqs(), 1, final[org])


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    try:
        yield fake
    finally:
        fake.release()
        fake.stop()


def test_slack_posts_once_per_activity_in_broker_mode(
    server_factory: ServerFactory, nats_server: NatsServer, slack: FakeSlack
) -> None:
    servers = [server_factory(env={**slack_env(slack), **broker(nats_server)}) for _ in range(2)]
    the_relay(servers)
    slack.latency = 0.2  # both servers are mid-call at once: without the claim they would both post
    script = "".join(
        f"""
        SELECT agent_activity_start(organization_id => '{ORGS[i % 2]}', agent_type => 'executor',
                                    agent_name => 'agent-{i}') AS id \\gset
        SELECT agent_activity_progress(id => :'id', message => 'working', progress => 50);
        SELECT agent_activity_complete(id => :'id');
        SELECT :'id';
        """
        for i in range(10)
    )
    ids = sql(servers[0].db_url, script).split()
    assert len(ids) == 10
    slack.wait_until(lambda: completed_everywhere(slack, ids), what="ten completed messages")
    for activity in ids:
        assert len(slack.messages_of(activity)) == 1
    assert len([c for c in slack.calls_of("chat.postMessage") if c.status == 200]) == 10
