// Activities past the snapshot's byte budget, against the real `pgactivity serve` started with a
// small PGACTIVITY_SNAPSHOT_MAX_BYTES: snapshots and search pages send them without their large
// fields, named in `truncated`; the store keeps the mark, `load(id)` fetches the whole row, and
// later live events merge with what was loaded.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { type Activity, type ActivityApi, type Json, createActivityApi } from "../src/index.js";
import { Recorder } from "./recorder.js";
import { Server, mintToken, psql, skipServer, uniqueOrg } from "./server.js";

// Three whole activities of about 20 KB fit in the budget, a fourth does not.
const BUDGET = 65_536;
const BLOB_CHARS = 20_000;
const FIELDS = ["status", "progress", "message", "inputData", "outputData", "error", "metadata", "agentName", "agentType", "sessionId", "category", "createdAt", "updatedAt", "completedAt"] as const;

/** 20,000 random hex characters: incompressible, so PostgreSQL stores them at full size. */
const blob = () => randomBytes(BLOB_CHARS / 2).toString("hex");
const literal = (value: Json) => `'${JSON.stringify(value).replaceAll("'", "''")}'`;

/** Starts `count` activities named big-0 (oldest) … big-{count-1}, each with about 20 KB of
 * input; returns their ids and inputs, oldest first. */
async function seed(org: string, count: number): Promise<{ ids: string[]; inputs: Json[] }> {
  const inputs: Json[] = Array.from({ length: count }, (_, n) => ({ n, blob: blob() }));
  let sql = "";
  for (const [n, input] of inputs.entries()) {
    sql += `SELECT agent_activity_start(organization_id => '${org}', agent_type => 'big', agent_name => 'big-${n}', input_data => ${literal(input)}, metadata => '{"n": ${n}}');\n`;
  }
  const ids = (await psql(sql)).trim().split("\n");
  assert.equal(ids.length, count);
  return { ids, inputs };
}

/** Every activity the store holds, field by field, against the server's whole rows. */
async function assertStoreHoldsWholeRows(held: readonly Activity[], api: ActivityApi): Promise<void> {
  for (const a of held) {
    const row = await api.getActivity(a.id);
    assert.ok(row, `${a.id} on the server`);
    assert.equal(row.truncated, undefined);
    assert.equal(a.truncated, undefined, `${a.agentName} still marked ${JSON.stringify(a.truncated)}`);
    for (const field of FIELDS) {
      // A completing write's other changes (the SQL API sets progress to 100) are not in its event.
      if (field === "progress" && row.status === "completed") continue;
      assert.deepEqual(a[field], row[field], `${field} of ${a.agentName}`);
    }
  }
}

describe("activities past the snapshot's byte budget", { skip: skipServer }, () => {
  let server: Server;
  before(async () => {
    server = await Server.start({ PGACTIVITY_SNAPSHOT_MAX_BYTES: String(BUDGET) });
  });
  after(async () => {
    await server?.stop();
  });

  test("the store keeps the mark, load(id) stores the whole row, later events merge with it", async () => {
    const org = uniqueOrg("heavy");
    const { ids, inputs } = await seed(org, 10);
    const longMessage = blob();
    await psql(`SELECT agent_activity_progress(id => '${ids[0]}', message => '${longMessage}');`); // seq 11
    const api = createActivityApi({ url: server.url, token: mintToken(org) });
    const fetched: string[] = [];
    const r = new Recorder(
      { url: server.url, token: mintToken(org) },
      {
        loadActivity: (id) => {
          fetched.push(id);
          return api.getActivity(id);
        },
      },
    );
    const named = (n: number) => r.store.get(ids[n]!);
    try {
      await r.until((x) => x.stream.lastEventId === 11 && x.stream.status === "live", "the snapshot");
      const snapshot = r.snapshots()[0]!;
      assert.ok(snapshot.type === "snapshot");
      assert.equal(snapshot.activities.length, 10);
      assert.ok(JSON.stringify(snapshot.activities).length < BUDGET + 10 * 1024);
      // Newest first: the newest three whole, the others without their input (the oldest
      // without its message too), each marked, in the snapshot and in the store alike.
      assert.deepEqual(
        snapshot.activities.map((a) => [a.agentName, a.truncated ?? null]),
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0].map((n) => [`big-${n}`, n >= 7 ? null : n === 0 ? ["inputData", "message"] : ["inputData"]]),
      );
      for (let n = 0; n < 10; n++) {
        const a = named(n)!;
        assert.deepEqual(a.truncated, snapshot.activities[9 - n]!.truncated, `the mark of big-${n}`);
        assert.deepEqual(a.inputData, n >= 7 ? inputs[n] : null);
        assert.deepEqual(a.metadata, { n }); // small fields are always sent
      }
      assert.equal(named(0)!.message, null);

      // load(id): one request, the whole row stored (a new object), subscribers notified.
      const before5 = named(5);
      let notified = 0;
      const off = r.store.subscribe(() => notified++);
      const loaded = await r.store.load(ids[5]!);
      off();
      assert.deepEqual(loaded?.inputData, inputs[5]);
      assert.equal(loaded?.truncated, undefined);
      assert.equal(named(5), loaded);
      assert.notEqual(loaded, before5);
      assert.equal(notified, 1);
      assert.equal(await r.store.load(ids[5]!), loaded); // nothing left to fetch
      assert.equal(await r.store.load(ids[9]!), named(9)); // never truncated: no request
      assert.deepEqual(fetched, [ids[5]]);

      // A live event for the loaded activity merges with the whole row.
      await psql(`SELECT agent_activity_progress(id => '${ids[5]}', message => 'after the load', progress => 60);`);
      await r.until((x) => x.stream.lastEventId === 12, "seq 12");
      assert.deepEqual(named(5)?.inputData, inputs[5]);
      assert.equal(named(5)?.message, "after the load");
      assert.equal(named(5)?.progress, 60);
      assert.equal(named(5)?.truncated, undefined);

      // An event that carries a truncated field clears that mark only; load fills in the rest
      // and keeps the event's value.
      await psql(`SELECT agent_activity_progress(id => '${ids[0]}', message => 'short again', progress => 10);`);
      await r.until((x) => x.stream.lastEventId === 13, "seq 13");
      assert.deepEqual(named(0)?.truncated, ["inputData"]);
      assert.equal(named(0)?.message, "short again");
      assert.equal(named(0)?.inputData, null);
      const zero = await r.store.load(ids[0]!);
      assert.deepEqual(zero?.inputData, inputs[0]);
      assert.equal(zero?.message, "short again");
      assert.equal(zero?.truncated, undefined);

      // Live events are never cut: a 20 KB output arrives whole (read from the log, too big
      // for a NOTIFY) on a truncated activity that was not loaded; its input stays marked.
      const output = { blob: blob() };
      await psql(`SELECT agent_activity_complete(id => '${ids[4]}', output_data => ${literal(output)});`);
      await r.until((x) => x.stream.lastEventId === 14, "seq 14");
      assert.equal(named(4)?.status, "completed");
      assert.deepEqual(named(4)?.outputData, output);
      assert.deepEqual(named(4)?.truncated, ["inputData"]);
      assert.equal(named(4)?.inputData, null);

      // Everything loaded, concurrently (one request per activity): the store is the server's rows.
      const marked = r.store.getSnapshot().filter((a) => a.truncated?.length);
      assert.deepEqual(marked.map((a) => a.agentName), ["big-6", "big-4", "big-3", "big-2", "big-1"]);
      await Promise.all([...marked, ...marked].map((a) => r.store.load(a.id)));
      assert.equal(fetched.length, 2 + marked.length);
      assert.equal(new Set(fetched).size, fetched.length);
      await assertStoreHoldsWholeRows(r.store.getSnapshot(), api);

      // And what comes after a load is still merged: a failure on a loaded row.
      await psql(`SELECT agent_activity_fail(id => '${ids[3]}', error => 'gave up');`);
      await r.until((x) => x.stream.lastEventId === 15, "seq 15");
      assert.equal(named(3)?.status, "failed");
      assert.deepEqual(named(3)?.inputData, inputs[3]);
      await assertStoreHoldsWholeRows(r.store.getSnapshot(), api);
    } finally {
      r.close();
    }
  });

  test("search pages keep to the same budget: items come marked, getActivity has the whole row", async () => {
    const org = uniqueOrg("heavy-search");
    const { ids, inputs } = await seed(org, 10);
    const api = createActivityApi({ url: server.url, token: mintToken(org) });
    const byId = new Map(ids.map((id, n) => [id, inputs[n]]));
    const check = (items: readonly Activity[]) => {
      for (const a of items) {
        if (a.truncated) {
          assert.deepEqual(a.truncated, ["inputData"]);
          assert.equal(a.inputData, null);
        } else {
          assert.deepEqual(a.inputData, byId.get(a.id));
        }
        assert.deepEqual(a.metadata, { n: Number(a.agentName?.slice(4)) });
      }
    };

    const page = await api.search({ limit: 10 });
    check(page.items);
    assert.deepEqual(page.items.map((a) => a.truncated !== undefined), [false, false, false, true, true, true, true, true, true, true]);
    assert.ok(JSON.stringify(page.items).length < BUDGET + 10 * 1024);

    // Each page has its own budget; searchAll hands every item over as the server sent it.
    const all: Activity[] = [];
    for await (const a of api.searchAll({ limit: 4 })) all.push(a);
    check(all);
    assert.deepEqual(all.map((a) => a.agentName), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0].map((n) => `big-${n}`));
    assert.deepEqual(all.map((a) => a.truncated !== undefined), [false, false, false, true, false, false, false, true, false, false]);

    // The text search (a page built another way) follows the rule too.
    const text = await api.search({ q: "big-", limit: 5 });
    check(text.items);
    assert.deepEqual(text.items.map((a) => a.truncated !== undefined), [false, false, false, true, true]);

    const cut = page.items[9]!;
    const whole = await api.getActivity(cut.id);
    assert.deepEqual(whole?.inputData, inputs[0]);
    assert.equal(whole?.truncated, undefined);
    // The log is never cut either.
    const events = await api.getActivityEvents(cut.id);
    assert.ok(events?.items[0]?.type === "agent_started");
    assert.deepEqual(events.items[0].data.inputData, inputs[0]);
  });
});
