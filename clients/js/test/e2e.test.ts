// The client against the real `pgactivity serve` (started and restarted here), psql as the writer.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Activity, type ActivityStore, createActivityApi } from "../src/index.js";
import { Recorder } from "./recorder.js";
import { Server, cli, mintToken, psql, skipServer, uniqueOrg } from "./server.js";

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function start(org: string, n: number, extra = ""): Promise<string> {
  let sql = "";
  for (let i = 0; i < n; i++) sql += `SELECT agent_activity_start(organization_id => '${org}', agent_type => 'executor', agent_name => 'agent-${i}'${extra});\n`;
  return psql(sql);
}

/** What the store holds, field by field, against the server's own rows. */
async function assertStoreMatchesServer(store: ActivityStore, url: string, org: string): Promise<void> {
  const api = createActivityApi({ url, token: mintToken(org) });
  const rows: Activity[] = [];
  for await (const row of api.searchAll({ limit: 200 })) rows.push(row);
  const held = store.getSnapshot();
  assert.deepEqual(
    held.map((a) => a.id),
    rows.map((a) => a.id),
  );
  for (const [i, row] of rows.entries()) {
    const a = held[i]!;
    // A completing write's other changes (the SQL API sets progress to 100) are not in its event.
    const fields = ["status", "progress", "message", "inputData", "outputData", "error", "metadata", "agentName", "agentType", "sessionId", "category", "createdAt", "updatedAt", "completedAt"] as const;
    for (const field of fields) {
      if (field === "progress" && row.status === "completed") continue;
      assert.deepEqual(a[field], row[field], `${field} of ${row.id}`);
    }
  }
}

describe("against pgactivity serve", { skip: skipServer }, () => {
  let server: Server;
  before(async () => {
    server = await Server.start();
  });
  after(async () => {
    await server?.stop();
  });

  test("a snapshot, then live events, applied to the store", async () => {
    const org = uniqueOrg();
    await start(org, 3, ", input_data => '{\"prompt\": \"x\"}'");
    const r = new Recorder({ url: server.url, token: mintToken(org) });
    try {
      await r.until((x) => x.events.length >= 1, "the snapshot");
      const first = r.events[0]!;
      assert.equal(first.type, "snapshot");
      assert.ok(first.type === "snapshot");
      assert.equal(first.seq, 3);
      assert.equal(first.reset, false);
      assert.equal(first.organizationId, org);
      assert.equal(first.activities.length, 3);
      assert.equal(r.stream.status, "live");

      await psql(`
        SELECT agent_activity_progress(id, message => 'half way', progress => 50) FROM agent_activities WHERE organization_id = '${org}' AND agent_name = 'agent-0';
        SELECT agent_activity_complete(id, output_data => '{"files": ["a.ts"]}') FROM agent_activities WHERE organization_id = '${org}' AND agent_name = 'agent-1';
        SELECT agent_activity_fail(id, error => 'timeout') FROM agent_activities WHERE organization_id = '${org}' AND agent_name = 'agent-2';`);
      await start(org, 1, ", session_id => 'ses-new', category => 'quick'");
      await r.until((x) => x.stream.lastEventId === 7, "seq 7");
      assert.deepEqual(r.seqs(), [4, 5, 6, 7]);
      assert.deepEqual(
        r.events.slice(1).map((e) => e.type),
        ["agent_progress", "agent_completed", "agent_failed", "agent_started"],
      );
      assert.equal(r.store.size, 4);
      assert.equal(r.store.getSnapshot()[0]!.sessionId, "ses-new"); // newest first
      await assertStoreMatchesServer(r.store, server.url, org);
    } finally {
      r.close();
    }
    assert.equal(r.stream.status, "closed");
  });

  test("resumes exactly after the server restarts", async () => {
    const org = uniqueOrg();
    await start(org, 2);
    const r = new Recorder({ url: server.url, token: mintToken(org) });
    try {
      await r.until((x) => x.stream.lastEventId === 2 && x.stream.status === "live", "the snapshot");
      await start(org, 2);
      await r.until((x) => x.stream.lastEventId === 4, "seq 4");
      await server.stop();
      await r.until((x) => x.stream.status === "reconnecting", "the drop");
      // Written while the server is down: replayed from the log once it is back.
      await start(org, 3);
      await psql(`SELECT agent_activity_progress(id, progress => 10) FROM agent_activities WHERE organization_id = '${org}';`);
      await server.start();
      await r.until((x) => x.stream.lastEventId === 14 && x.stream.status === "live", "seq 14 after the restart");
      await start(org, 1);
      await r.until((x) => x.stream.lastEventId === 15, "seq 15, live");
      assert.deepEqual(r.seqs(), range(3, 15)); // no gap, no repeat
      assert.equal(r.snapshots().length, 1); // a replay, not a second snapshot
      assert.ok(r.statuses.includes("reconnecting"));
      await assertStoreMatchesServer(r.store, server.url, org);
    } finally {
      r.close();
    }
  });

  test("a resume from purged events gets a reset snapshot that replaces the store", async () => {
    const org = uniqueOrg();
    await start(org, 3);
    await psql(`SELECT agent_activity_complete(id) FROM agent_activities WHERE organization_id = '${org}' AND agent_name = 'agent-0';`);
    const r = new Recorder({ url: server.url, token: mintToken(org) });
    try {
      await r.until((x) => x.stream.lastEventId === 4, "the snapshot");
      assert.equal(r.store.size, 3);
      await server.stop();
      await r.until((x) => x.stream.status === "reconnecting", "the drop");
      // While away: two more events, then a purge of everything up to seq 5 and of the
      // completed activity, so the client's seq 4 cannot be replayed.
      await start(org, 2);
      await psql(`
        UPDATE agent_activity_events SET created_at = now() - interval '40 days' WHERE organization_id = '${org}' AND seq <= 5;
        UPDATE agent_activities SET completed_at = now() - interval '40 days' WHERE organization_id = '${org}' AND status = 'completed';`);
      const out = await cli("purge", "--older-than", "30");
      assert.match(out, /deleted 1 activities and 5 events/);
      await server.start();
      await r.until((x) => x.snapshots().length === 2, "the reset snapshot");
      const reset = r.snapshots()[1]!;
      assert.ok(reset.type === "snapshot");
      assert.equal(reset.reset, true);
      assert.equal(reset.seq, 7); // the UPDATE of completed_at was event 7
      assert.equal(r.store.size, 4); // agent-0 is gone, the two new ones are in
      assert.ok(!r.store.getSnapshot().some((a) => a.agentName === "agent-0" && a.status === "completed"));
      assert.equal(r.store.snapshots, 2);
      await start(org, 1);
      await r.until((x) => x.stream.lastEventId === 8, "seq 8, live after the reset");
      await assertStoreMatchesServer(r.store, server.url, org);
    } finally {
      r.close();
    }
  });

  test("token expiry: getToken, and the stream resumes with no gap and no repeat", async () => {
    const org = uniqueOrg();
    await start(org, 1);
    const reasons: string[] = [];
    const tokens: string[] = [];
    const r = new Recorder({
      url: server.url,
      getToken: ({ reason }) => {
        reasons.push(reason);
        tokens.push(mintToken(org, reasons.length === 1 ? 2 : 3600)); // the first one expires at once
        return tokens[tokens.length - 1]!;
      },
    });
    try {
      await r.until((x) => x.stream.lastEventId === 1, "the snapshot");
      await start(org, 2);
      await r.until((x) => x.stream.lastEventId === 3, "seq 3");
      // The server ends the stream at the token's exp: {"type": "end", "reason": "token_expired"}.
      await r.until((x) => x.events.some((e) => e.type === "end"), "the server's end of stream", 30_000);
      const end = r.events.find((e) => e.type === "end");
      assert.ok(end?.type === "end");
      assert.equal(end.reason, "token_expired");
      await r.until((x) => reasons.length === 2 && x.stream.status === "live", "a fresh token and a live stream");
      await start(org, 2);
      await r.until((x) => x.stream.lastEventId === 5, "seq 5 with the fresh token");
      assert.deepEqual(reasons, ["initial", "expired"]);
      assert.deepEqual(r.seqs(), [2, 3, 4, 5]);
      assert.equal(r.snapshots().length, 1);
      // The expired token itself is now refused, with the JSON error.
      const refused = await fetch(`${server.url}/api/activity/stream`, { headers: { Authorization: `Bearer ${tokens[0]}` } });
      assert.equal(refused.status, 401);
      assert.deepEqual(await refused.json(), { error: { code: "unauthorized", message: "token expired" } });
    } finally {
      r.close();
    }
  });

  test("a 401 that a fresh token cannot fix fails the stream instead of retrying", async () => {
    const org = uniqueOrg();
    const reasons: string[] = [];
    const r = new Recorder({
      url: server.url,
      getToken: ({ reason }) => {
        reasons.push(reason);
        return mintToken(org, 3600, "not-the-servers-secret-0123456789abcdef");
      },
    });
    try {
      await r.until((x) => x.stream.status === "failed", "the failure");
      assert.deepEqual(reasons, ["initial", "unauthorized"]);
      assert.equal(r.stream.error?.status, 401);
      assert.equal(r.stream.error?.code, "unauthorized");
    } finally {
      r.close();
    }
    // A fixed expired token: one request, then failed.
    const expired = new Recorder({ url: server.url, token: mintToken(org, -60) });
    try {
      await expired.until((x) => x.stream.status === "failed", "the failure");
      assert.equal(expired.stream.error?.message, "token expired");
    } finally {
      expired.close();
    }
  });

  test("a client sees only its own organization", async () => {
    const mine = uniqueOrg("mine");
    const other = uniqueOrg("other");
    await start(mine, 1);
    await start(other, 2);
    const r = new Recorder({ url: server.url, token: mintToken(mine) });
    try {
      await r.until((x) => x.events.length >= 1, "the snapshot");
      await start(other, 3);
      await start(mine, 1);
      await r.until((x) => x.stream.lastEventId === 2, "seq 2");
      assert.deepEqual(r.seqs(), [2]);
      for (const a of r.store.getSnapshot()) assert.equal(a.organizationId, mine);
      assert.equal(r.store.size, 2);
      const otherId = (await psql(`SELECT id FROM agent_activities WHERE organization_id = '${other}' LIMIT 1`)).trim();
      const api = createActivityApi({ url: server.url, token: mintToken(mine) });
      assert.equal(await api.getActivity(otherId), null); // a plain 404
      assert.equal((await api.search()).items.length, 2);
    } finally {
      r.close();
    }
  });

  test("filters: only matching activities and events, in the snapshot and live", async () => {
    const org = uniqueOrg();
    await psql(`
      SELECT agent_activity_start(organization_id => '${org}', agent_type => 'planner', session_id => 's1', category => 'quick');
      SELECT agent_activity_start(organization_id => '${org}', agent_type => 'executor', session_id => 's1', category => 'deep');
      SELECT agent_activity_start(organization_id => '${org}', agent_type => 'executor', session_id => 's2', category => 'quick');`);
    const byType = new Recorder({ url: server.url, token: mintToken(org), filters: { agentType: "executor" } });
    const bySession = new Recorder({ url: server.url, token: mintToken(org), filters: { sessionId: "s1", category: "quick" } });
    try {
      await byType.until((x) => x.events.length >= 1, "snapshot");
      await bySession.until((x) => x.events.length >= 1, "snapshot");
      assert.equal(byType.store.size, 2);
      assert.deepEqual(bySession.store.getSnapshot().map((a) => a.agentType), ["planner"]);
      for (const [type, session] of [["planner", "s1"], ["executor", "s1"], ["executor", "s2"]]) {
        await psql(`SELECT agent_activity_progress(id, progress => 1) FROM agent_activities WHERE organization_id = '${org}' AND agent_type = '${type}' AND session_id = '${session}';`);
      }
      await psql(`SELECT agent_activity_start(organization_id => '${org}', agent_type => 'planner', session_id => 's1', category => 'quick');`);
      await byType.until((x) => x.seqs().length === 2, "two executor events");
      await bySession.until((x) => x.seqs().length === 2, "two s1/quick events");
      assert.deepEqual(byType.seqs(), [5, 6]);
      assert.deepEqual(bySession.seqs(), [4, 7]);
      // Bad filters are refused (400), reported, not retried.
      const bad = new Recorder({ url: server.url, token: mintToken(org), filters: { agentType: "x".repeat(201) } });
      await bad.until((x) => x.stream.status === "failed", "the 400");
      assert.equal(bad.stream.error?.status, 400);
      bad.close();
    } finally {
      byType.close();
      bySession.close();
    }
  });

  test("search helpers page with the cursor", async () => {
    const org = uniqueOrg();
    await start(org, 5);
    let calls = 0;
    const api = createActivityApi({
      url: server.url,
      getToken: () => {
        calls++;
        return mintToken(org);
      },
    });
    const first = await api.search({ limit: 2 });
    assert.equal(first.items.length, 2);
    assert.ok(first.nextCursor);
    const names: string[] = [];
    for await (const a of api.searchAll({ limit: 2 })) names.push(a.agentName ?? "");
    assert.deepEqual(names, ["agent-4", "agent-3", "agent-2", "agent-1", "agent-0"]);
    assert.equal((await api.search({ q: "agent-3" })).items.length, 1);
    const one = first.items[0]!;
    assert.equal((await api.getActivity(one.id))?.id, one.id);
    const events = await api.getActivityEvents(one.id);
    assert.deepEqual(events?.items.map((e) => e.type), ["agent_started"]);
    assert.equal(calls, 1); // the token is kept
    await assert.rejects(api.search({ since: "not a date" }), (e: Error & { status?: number }) => e.status === 400);
  });
});
