/**
 * The stream's messages, typed from the README's "Event format": a discriminated union on `type`.
 *
 * Every message is one JSON object (the SSE `data:` line, or one WebSocket text message). The
 * first of a stream is a `snapshot` (or, when resuming with a last event id, the exact replay of
 * what was missed); `seq` is per organization, gapless and in commit order. An `end` message
 * (no `seq`) says why the server is about to end the stream.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type ActivityStatus = "running" | "completed" | "failed";

/** Large fields a snapshot or a search page may send as null (listed in `truncated`). */
export type TruncatableField = "inputData" | "outputData" | "metadata" | "message" | "error";
export const TRUNCATABLE_FIELDS: readonly TruncatableField[] = ["inputData", "outputData", "metadata", "message", "error"];

/** One row of `agent_activities`, in camelCase (snapshots, search, `GET /api/activities/{id}`). */
export interface Activity {
  readonly id: string;
  readonly organizationId: string;
  readonly sessionId: string | null;
  readonly agentType: string;
  readonly agentName: string | null;
  readonly category: string | null;
  readonly status: ActivityStatus;
  readonly progress: number | null;
  readonly message: string | null;
  readonly inputData: Json;
  readonly outputData: Json;
  readonly error: string | null;
  readonly metadata: Json;
  readonly createdAt: string | null;
  readonly updatedAt: string | null;
  readonly completedAt: string | null;
  /** Fields sent as null because they would not fit the snapshot's byte budget; absent when none. */
  readonly truncated?: readonly TruncatableField[];
}

export interface SnapshotEvent {
  readonly type: "snapshot";
  /** The last event the snapshot includes; live events follow from seq + 1. */
  readonly seq: number;
  readonly organizationId: string;
  /** True when the requested last event id could not be replayed: the snapshot replaces everything. */
  readonly reset: boolean;
  readonly activities: readonly Activity[];
}

interface ActivityEventBase {
  readonly seq: number;
  readonly activityId: string;
  readonly organizationId: string;
  readonly sessionId: string | null;
  readonly agentType: string;
  readonly agentName: string | null;
  readonly category: string | null;
  /** The activity's status after the write. */
  readonly status?: ActivityStatus;
  /** The activity's `updated_at`, UTC. */
  readonly timestamp: string;
}

export interface AgentStartedEvent extends ActivityEventBase {
  readonly type: "agent_started";
  readonly data: { readonly inputData: Json; readonly metadata: Json };
}

export interface AgentProgressEvent extends ActivityEventBase {
  readonly type: "agent_progress";
  readonly data: { readonly message: string | null; readonly progress: number | null };
}

export interface AgentCompletedEvent extends ActivityEventBase {
  readonly type: "agent_completed";
  readonly data: { readonly outputData: Json };
}

export interface AgentFailedEvent extends ActivityEventBase {
  readonly type: "agent_failed";
  readonly data: { readonly error: string | null };
}

export type AgentEvent = AgentStartedEvent | AgentProgressEvent | AgentCompletedEvent | AgentFailedEvent;

/** What carries a `seq`: the snapshot and the four activity events. */
export type ActivityEvent = SnapshotEvent | AgentEvent;

export type EndReason = "token_expired" | "shutdown" | "slow_client";

/** Sent (without an id) right before the server ends a stream. */
export interface EndEvent {
  readonly type: "end";
  readonly reason: EndReason | (string & {});
}

/** Everything a subscriber of a stream receives. */
export type StreamEvent = ActivityEvent | EndEvent;

const AGENT_TYPES = new Set(["agent_started", "agent_progress", "agent_completed", "agent_failed"]);

/**
 * Reads one message's JSON. Returns null for what a client must skip: JSON that is not an object,
 * heartbeats, types this client does not know (a newer server's), and events without a valid seq.
 */
export function parseStreamEvent(text: string): StreamEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const event = value as { type?: unknown; seq?: unknown; activities?: unknown; activityId?: unknown; data?: unknown };
  if (event.type === "end") return value as EndEvent;
  if (!Number.isSafeInteger(event.seq) || (event.seq as number) < 0) return null;
  if (event.type === "snapshot") return Array.isArray(event.activities) ? (value as SnapshotEvent) : null;
  if (typeof event.type === "string" && AGENT_TYPES.has(event.type) && typeof event.activityId === "string") {
    if (typeof event.data !== "object" || event.data === null) (value as { data: object }).data = {};
    return value as AgentEvent;
  }
  return null;
}
