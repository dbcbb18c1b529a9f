// The stream's reconnection rules through a scripted Transport (the seam), no server.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ActivityStreamError, backoffDelay, connectActivityStream, type StreamEvent, type TransportHandlers, type TransportRequest } from "../src/index.js";

type Step = (h: TransportHandlers, request: TransportRequest) => void;

function scripted(steps: Step[]) {
  const requests: TransportRequest[] = [];
  const transport = (request: TransportRequest, handlers: TransportHandlers) => {
    requests.push(request);
    const step = steps.shift();
    if (step) queueMicrotask(() => step(handlers, request));
    return { close() {} };
  };
  return { transport, requests };
}

const ev = (seq: number) => JSON.stringify({ type: "agent_progress", seq, activityId: "a", organizationId: "o", agentType: "t", data: {} });
const snap = (seq: number) => JSON.stringify({ type: "snapshot", seq, organizationId: "o", reset: false, activities: [] });

function waitStatus(stream: ReturnType<typeof connectActivityStream>, status: string): Promise<void> {
  return new Promise((resolve) => {
    if (stream.status === status) resolve();
    const off = stream.onStatus((s) => {
      if (s === status) {
        off();
        resolve();
      }
    });
  });
}

test("token_expired: a fresh token, the last id, nothing repeated", async () => {
  const tokens: string[] = [];
  const { transport, requests } = scripted([
    (h) => {
      h.onOpen();
      h.onMessage(snap(10));
      h.onMessage(ev(11));
      h.onMessage(JSON.stringify({ type: "end", reason: "token_expired" }));
      h.onEnd({ kind: "ended" });
    },
    (h) => {
      h.onOpen();
      h.onMessage(ev(11)); // a repeat is dropped
      h.onMessage(ev(12));
      h.onMessage("not json");
      h.onMessage(JSON.stringify({ type: "heartbeat" }));
      h.onMessage(JSON.stringify({ type: "from_the_future", seq: 13 }));
    },
  ]);
  const events: StreamEvent[] = [];
  const stream = connectActivityStream({
    transport,
    getToken: ({ reason }) => {
      tokens.push(reason);
      return `token-${tokens.length}`;
    },
    onEvent: (e) => events.push(e),
  });
  await new Promise<void>((resolve) => stream.subscribe((e) => e.type !== "end" && e.type !== "snapshot" && e.seq === 12 && resolve()));
  assert.deepEqual(tokens, ["initial", "expired"]);
  assert.deepEqual(requests.map((r) => [r.token, r.lastEventId]), [["token-1", null], ["token-2", 11]]);
  assert.deepEqual(events.map((e) => (e.type === "end" ? "end" : e.seq)), [10, 11, "end", 12]);
  assert.equal(stream.lastEventId, 12);
  stream.close();
});

test("getToken refusing (null) fails the stream; a getToken error is retried", async () => {
  let calls = 0;
  const { transport } = scripted([]);
  const stream = connectActivityStream({
    transport,
    backoff: { initialMs: 1, maxMs: 2 },
    getToken: () => {
      calls++;
      if (calls === 1) throw new Error("auth server down");
      return null;
    },
  });
  await waitStatus(stream, "failed");
  assert.equal(calls, 2);
  assert.equal(stream.error?.code, "unauthorized");
  stream.close();
  assert.equal(stream.status, "closed");
});

test("network failures back off and retry with the last id; 400 stops", async () => {
  const { transport, requests } = scripted([
    (h) => {
      h.onOpen();
      h.onMessage(snap(3));
      h.onEnd({ kind: "failed", error: new ActivityStreamError("network", "reset") });
    },
    (h) => h.onEnd({ kind: "failed", error: new ActivityStreamError("http_error", "HTTP 503", 503) }),
    (h) => h.onEnd({ kind: "failed", error: new ActivityStreamError("bad_request", "bad filter", 400) }),
  ]);
  const stream = connectActivityStream({ transport, token: "t", backoff: { initialMs: 1, maxMs: 2 } });
  await waitStatus(stream, "failed");
  assert.deepEqual(requests.map((r) => r.lastEventId), [null, 3, 3]);
  assert.equal(stream.error?.status, 400);
});

test("backoff: exponential, capped, jittered within [base/2, base]", () => {
  assert.equal(backoffDelay(0, {}, () => 0), 500);
  assert.equal(backoffDelay(0, {}, () => 1), 1000);
  assert.equal(backoffDelay(3, {}, () => 1), 8000);
  assert.equal(backoffDelay(10, {}, () => 1), 30000);
  assert.equal(backoffDelay(50, { initialMs: 100, maxMs: 400 }, () => 0), 200);
});
