// ActivityStore: snapshot and events merged into activities (no server needed).
import assert from "node:assert/strict";
import { test } from "node:test";
import { type Activity, ActivityStore, type AgentEvent, type SnapshotEvent } from "../src/index.js";

function activity(id: string, createdAt: string, extra: Partial<Activity> = {}): Activity {
  return {
    id, organizationId: "org", sessionId: "s", agentType: "executor", agentName: `name-${id}`, category: null,
    status: "running", progress: null, message: null, inputData: null, outputData: null, error: null,
    metadata: null, createdAt, updatedAt: createdAt, completedAt: null, ...extra,
  };
}

const snapshot = (seq: number, activities: Activity[], reset = false): SnapshotEvent => ({ type: "snapshot", seq, organizationId: "org", reset, activities });

function event<T extends AgentEvent["type"]>(type: T, seq: number, id: string, data: Extract<AgentEvent, { type: T }>["data"], extra: Partial<AgentEvent> = {}): AgentEvent {
  return {
    type, seq, activityId: id, organizationId: "org", sessionId: "s", agentType: "executor", agentName: `name-${id}`,
    category: null, timestamp: `2026-01-01T00:00:${String(seq).padStart(2, "0")}Z`, data, ...extra,
  } as AgentEvent;
}

test("snapshot then events: newest first, one new object per change, the same array until a change", () => {
  const store = new ActivityStore();
  let notified = 0;
  store.subscribe(() => notified++);
  store.apply(snapshot(2, [activity("a", "2026-01-01T00:00:00Z"), activity("b", "2026-01-01T00:00:01Z")]));
  assert.deepEqual(store.getSnapshot().map((a) => a.id), ["b", "a"]);
  const before = store.getSnapshot();
  assert.equal(store.getSnapshot(), before);
  const a = store.get("a");
  store.apply(event("agent_progress", 3, "a", { message: "half", progress: 50 }));
  assert.notEqual(store.getSnapshot(), before);
  assert.notEqual(store.get("a"), a);
  assert.equal(a?.progress, null); // never mutated
  assert.equal(store.get("b"), before[0]); // untouched ones keep their identity
  store.apply(event("agent_started", 4, "c", { inputData: { p: 1 }, metadata: null }));
  store.apply(event("agent_completed", 5, "a", { outputData: { ok: true } }));
  store.apply(event("agent_failed", 6, "b", { error: "boom" }));
  assert.deepEqual(store.getSnapshot().map((x) => [x.id, x.status]), [["c", "running"], ["b", "failed"], ["a", "completed"]]);
  assert.deepEqual(store.get("a")?.outputData, { ok: true });
  assert.equal(store.get("a")?.message, "half");
  assert.equal(store.get("a")?.completedAt, "2026-01-01T00:00:05Z");
  assert.equal(store.get("b")?.error, "boom");
  assert.deepEqual(store.get("c")?.inputData, { p: 1 });
  assert.equal(store.lastEventId, 6);
  assert.equal(notified, 5);
  store.apply({ type: "end", reason: "shutdown" });
  assert.equal(notified, 5);
});

test("an INSERT that is already finished, and an activity older than the snapshot", () => {
  const store = new ActivityStore();
  store.apply(snapshot(0, []));
  store.apply(event("agent_started", 1, "x", { inputData: null, metadata: null }, { status: "completed" }));
  assert.equal(store.get("x")?.status, "completed");
  store.apply(event("agent_progress", 2, "old", { message: "still going", progress: 90 }));
  assert.equal(store.get("old")?.message, "still going");
  assert.equal(store.get("old")?.createdAt, null);
});

test("a reset snapshot replaces everything", () => {
  const store = new ActivityStore();
  store.apply(snapshot(2, [activity("a", "2026-01-01T00:00:00Z"), activity("b", "2026-01-01T00:00:01Z")]));
  store.apply(event("agent_started", 3, "c", { inputData: null, metadata: null }));
  store.apply(snapshot(9, [activity("z", "2026-01-02T00:00:00Z")], true));
  assert.deepEqual(store.getSnapshot().map((a) => a.id), ["z"]);
  assert.equal(store.lastEventId, 9);
  assert.equal(store.snapshots, 2);
});

test("filters apply to the snapshot and to events; an activity that stops matching goes", () => {
  const store = new ActivityStore({ filters: { agentType: "executor" } });
  store.apply(snapshot(1, [activity("a", "2026-01-01T00:00:00Z"), activity("p", "2026-01-01T00:00:01Z", { agentType: "planner" })]));
  assert.deepEqual(store.getSnapshot().map((a) => a.id), ["a"]);
  store.apply(event("agent_started", 2, "q", { inputData: null, metadata: null }, { agentType: "planner" }));
  assert.equal(store.get("q"), undefined);
  store.apply(event("agent_progress", 3, "a", { message: null, progress: 1 }, { agentType: "renamed" }));
  assert.equal(store.size, 0);
});

test("beyond the limit the oldest finished activities go, running ones stay", () => {
  const store = new ActivityStore({ limit: 2 });
  store.apply(snapshot(0, [
    activity("r", "2026-01-01T00:00:00Z"),
    activity("f1", "2026-01-01T00:00:01Z", { status: "completed" }),
    activity("f2", "2026-01-01T00:00:02Z", { status: "failed" }),
  ]));
  assert.deepEqual(store.getSnapshot().map((a) => a.id), ["f2", "r"]);
});

test("truncated fields: load fetches the row once and fills in what is still marked", async () => {
  const full = activity("t", "2026-01-01T00:00:00Z", { inputData: { big: "x".repeat(10) }, message: "full message", metadata: { m: 1 } });
  let calls = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const store = new ActivityStore({
    loadActivity: async (id) => {
      calls++;
      await gate;
      return id === "t" ? { ...full, message: "newer, from the row" } : null;
    },
  });
  store.apply(snapshot(1, [activity("t", "2026-01-01T00:00:00Z", { truncated: ["inputData", "message", "metadata"] })]));
  // A live event carries message: that one is no longer truncated, and keeps the event's value.
  store.apply(event("agent_progress", 2, "t", { message: "from the event", progress: 5 }));
  assert.deepEqual(store.get("t")?.truncated, ["inputData", "metadata"]);
  const one = store.load("t");
  const two = store.load("t");
  assert.equal(one, two);
  release();
  const loaded = await one;
  assert.equal(calls, 1);
  assert.deepEqual(loaded?.inputData, { big: "xxxxxxxxxx" });
  assert.deepEqual(loaded?.metadata, { m: 1 });
  assert.equal(loaded?.message, "from the event");
  assert.equal(loaded?.truncated, undefined);
  assert.equal(store.get("t"), loaded);
  assert.equal(await store.load("t"), loaded); // nothing left to fetch
  assert.equal(calls, 1);
});
