/**
 * ActivityStore: the activities a stream describes, kept current from its snapshot and events.
 *
 * It is state only (no transport): feed it events with `apply`, or `attach` it to a stream.
 * - A snapshot (with or without `reset`) replaces everything.
 * - `agent_started|progress|completed|failed` update one activity; an activity the snapshot did
 *   not hold (it started before the snapshot's window) is known from its first event on.
 * - `getSnapshot()` is the activities newest first, filters applied: the same array until
 *   something changes, and activities are never mutated (a changed one is a new object), so it
 *   suits React's useSyncExternalStore and memoisation by identity.
 * - Snapshot and search rows may come with large fields set to null and listed in `truncated`;
 *   `load(id)` fetches the whole row (GET /api/activities/{id}) and fills them in. An event that
 *   carries a field (live events are never truncated) clears its mark.
 * - At most `limit` activities are kept: beyond it the oldest finished ones go.
 */

import type { Activity, ActivityStatus, AgentEvent, StreamEvent, TruncatableField } from "./events.js";
import type { ActivityStream, StreamFilters } from "./stream.js";

export interface ActivityStoreOptions {
  /** Keep only the activities that match (the stream's filters, applied again client-side). */
  readonly filters?: StreamFilters;
  /** The most activities kept (running ones are never dropped); default 1000. */
  readonly limit?: number;
  /** Fetches one whole activity, for `load`; null when it is gone. */
  readonly loadActivity?: (id: string) => Promise<Activity | null>;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const EVENT_FIELDS: Record<AgentEvent["type"], readonly TruncatableField[]> = {
  agent_started: ["inputData", "metadata"],
  agent_progress: ["message"],
  agent_completed: ["outputData"],
  agent_failed: ["error"],
};

function sortKey(activity: Activity): string {
  return activity.createdAt ?? activity.updatedAt ?? "";
}

/** Newest first: createdAt, then id, descending (the search API's order). */
export function newestFirst(a: Activity, b: Activity): number {
  const ka = sortKey(a);
  const kb = sortKey(b);
  if (ka !== kb) return ka < kb ? 1 : -1;
  if (a.id === b.id) return 0;
  return a.id < b.id ? 1 : -1;
}

function matches(filters: StreamFilters | undefined, a: { sessionId: string | null; agentType: string; category: string | null }): boolean {
  if (!filters) return true;
  if (filters.sessionId && a.sessionId !== filters.sessionId) return false;
  if (filters.agentType && a.agentType !== filters.agentType) return false;
  if (filters.category && a.category !== filters.category) return false;
  return true;
}

export class ActivityStore {
  private readonly byId = new Map<string, Activity>();
  private readonly listeners = new Set<() => void>();
  private readonly loading = new Map<string, Promise<Activity | undefined>>();
  private sorted: readonly Activity[] | null = [];
  private seq: number | null = null;
  private organization: string | null = null;
  private snapshotCount = 0;
  private readonly limit: number;

  constructor(private readonly options: ActivityStoreOptions = {}) {
    this.limit = options.limit ?? 1000;
  }

  /** The activities, newest first; the same array until something changes. */
  getSnapshot = (): readonly Activity[] => {
    if (this.sorted === null) this.sorted = Object.freeze([...this.byId.values()].sort(newestFirst));
    return this.sorted;
  };

  /** Calls `listener` after each change. */
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  get(id: string): Activity | undefined {
    return this.byId.get(id);
  }

  get size(): number {
    return this.byId.size;
  }

  /** The seq of the last event applied. */
  get lastEventId(): number | null {
    return this.seq;
  }

  get organizationId(): string | null {
    return this.organization;
  }

  /** How many snapshots were applied (more than one: the stream was reset). */
  get snapshots(): number {
    return this.snapshotCount;
  }

  /** Applies every event of `stream` from now on; returns the unsubscribe function. */
  attach(stream: ActivityStream): () => void {
    return stream.subscribe((event) => this.apply(event));
  }

  apply(event: StreamEvent): void {
    switch (event.type) {
      case "snapshot": {
        this.byId.clear();
        for (const activity of event.activities) {
          if (activity && typeof activity.id === "string" && matches(this.options.filters, activity)) {
            this.byId.set(activity.id, activity);
          }
        }
        this.organization = event.organizationId;
        this.snapshotCount++;
        this.seq = event.seq;
        break;
      }
      case "agent_started":
      case "agent_progress":
      case "agent_completed":
      case "agent_failed":
        this.update(event);
        this.seq = event.seq;
        break;
      default:
        return; // "end" and anything newer: nothing to apply
    }
    this.trim();
    this.changed();
  }

  /** Forgets everything (e.g. before connecting with another token). */
  clear(): void {
    this.byId.clear();
    this.seq = null;
    this.organization = null;
    this.changed();
  }

  /**
   * The whole activity: fetches it when fields were truncated (one request per activity at a
   * time), fills in the fields still marked, and notifies. Without `loadActivity`, or when the
   * activity is gone, the activity as it is.
   */
  load(id: string): Promise<Activity | undefined> {
    const current = this.byId.get(id);
    if (!current?.truncated?.length || !this.options.loadActivity) return Promise.resolve(current);
    const pending = this.loading.get(id);
    if (pending) return pending;
    const promise = this.options
      .loadActivity(id)
      .then((row) => {
        const now = this.byId.get(id);
        if (!now || !row || !now.truncated?.length) return now;
        const merged: Mutable<Activity> = { ...now };
        for (const field of now.truncated) (merged as Record<TruncatableField, unknown>)[field] = row[field];
        delete merged.truncated;
        this.byId.set(id, merged);
        this.changed();
        return merged as Activity;
      })
      .finally(() => this.loading.delete(id));
    this.loading.set(id, promise);
    return promise;
  }

  private update(event: AgentEvent): void {
    const previous = this.byId.get(event.activityId);
    if (!matches(this.options.filters, event)) {
      if (previous) this.byId.delete(event.activityId); // it no longer matches
      return;
    }
    const next: Mutable<Activity> = previous
      ? { ...previous }
      : {
          id: event.activityId,
          organizationId: event.organizationId,
          sessionId: null,
          agentType: event.agentType,
          agentName: null,
          category: null,
          status: "running",
          progress: null,
          message: null,
          inputData: null,
          outputData: null,
          error: null,
          metadata: null,
          createdAt: null,
          updatedAt: null,
          completedAt: null,
        };
    next.sessionId = event.sessionId ?? null;
    next.agentType = event.agentType ?? next.agentType;
    next.agentName = event.agentName ?? null;
    next.category = event.category ?? null;
    next.updatedAt = event.timestamp ?? next.updatedAt;
    const status: ActivityStatus | undefined = event.status;
    switch (event.type) {
      case "agent_started":
        next.status = status ?? "running"; // an INSERT may already be finished
        next.inputData = event.data.inputData ?? null;
        next.metadata = event.data.metadata ?? null;
        next.createdAt = event.timestamp ?? next.createdAt;
        if (next.status !== "running") next.completedAt = event.timestamp ?? null;
        break;
      case "agent_progress":
        if (status) next.status = status;
        next.message = event.data.message ?? null;
        next.progress = event.data.progress ?? null;
        break;
      case "agent_completed":
        next.status = "completed";
        next.outputData = event.data.outputData ?? null;
        next.completedAt = event.timestamp ?? null;
        break;
      case "agent_failed":
        next.status = "failed";
        next.error = event.data.error ?? null;
        next.completedAt = event.timestamp ?? null;
        break;
    }
    if (next.truncated) {
      const carried = EVENT_FIELDS[event.type];
      const left = next.truncated.filter((field) => !carried.includes(field));
      if (left.length) next.truncated = left;
      else delete next.truncated;
    }
    this.byId.set(next.id, next);
  }

  private trim(): void {
    if (this.byId.size <= this.limit) return;
    const finished = [...this.byId.values()].filter((a) => a.status !== "running").sort(newestFirst);
    while (this.byId.size > this.limit && finished.length) {
      const oldest = finished.pop();
      if (oldest) this.byId.delete(oldest.id);
    }
  }

  private changed(): void {
    this.sorted = null;
    for (const listener of [...this.listeners]) listener();
  }
}
