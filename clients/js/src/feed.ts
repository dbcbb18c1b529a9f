/**
 * ActivityFeed: a stream, a store and the API wired together, started while someone watches.
 *
 * `subscribe(listener)` starts the stream for the first watcher and closes it after the last
 * one leaves; a later watcher resumes from the store's last event id (nothing is replayed twice,
 * nothing missed). `getState()` returns the same object until something changes: it is what
 * `useActivityStream` hands to useSyncExternalStore, and what a page without React can use.
 */

import { ActivityApi } from "./api.js";
import type { ActivityStreamError } from "./errors.js";
import type { Activity, StreamEvent } from "./events.js";
import { ActivityStore } from "./store.js";
import { ActivityStream, type ActivityStreamOptions, type StreamStatus } from "./stream.js";

export interface ActivityFeedOptions extends Omit<ActivityStreamOptions, "onStatus" | "lastEventId"> {
  /** The most activities kept (see ActivityStore); default 1000. */
  readonly limit?: number;
}

export interface ActivityFeedState {
  /** Newest first. */
  readonly activities: readonly Activity[];
  readonly status: StreamStatus;
  readonly error: ActivityStreamError | null;
  readonly lastEventId: number | null;
  readonly organizationId: string | null;
}

const IDLE: ActivityFeedState = Object.freeze({
  activities: Object.freeze([]) as readonly Activity[],
  status: "connecting" as StreamStatus,
  error: null,
  lastEventId: null,
  organizationId: null,
});

export class ActivityFeed {
  readonly store: ActivityStore;
  readonly api: ActivityApi;
  private stream: ActivityStream | null = null;
  private readonly watchers = new Set<() => void>();
  private state: ActivityFeedState = IDLE;
  private status: StreamStatus = "connecting";
  private error: ActivityStreamError | null = null;

  constructor(private readonly options: ActivityFeedOptions) {
    const apiOptions: { url?: string; token?: string | null; getToken?: ActivityStreamOptions["getToken"]; fetch?: typeof fetch; credentials?: RequestCredentials } = {};
    if (options.url !== undefined) apiOptions.url = options.url;
    if (options.token !== undefined) apiOptions.token = options.token;
    if (options.getToken) apiOptions.getToken = options.getToken;
    if (options.fetch) apiOptions.fetch = options.fetch;
    if (options.credentials) apiOptions.credentials = options.credentials;
    this.api = new ActivityApi(apiOptions);
    const storeOptions: { filters?: NonNullable<ActivityStreamOptions["filters"]>; limit?: number; loadActivity: (id: string) => Promise<Activity | null> } = {
      loadActivity: (id) => this.api.getActivity(id),
    };
    if (options.filters) storeOptions.filters = options.filters;
    if (options.limit !== undefined) storeOptions.limit = options.limit;
    this.store = new ActivityStore(storeOptions);
    this.store.subscribe(() => this.refresh());
  }

  getState = (): ActivityFeedState => this.state;

  subscribe = (listener: () => void): (() => void) => {
    this.watchers.add(listener);
    if (this.watchers.size === 1) this.start();
    return () => {
      if (!this.watchers.delete(listener)) return;
      if (this.watchers.size === 0) this.stop();
    };
  };

  /** The whole activity (fetches truncated fields); see ActivityStore.load. */
  load(id: string): Promise<Activity | undefined> {
    return this.store.load(id);
  }

  /** See ActivityStream.retryNow. */
  retryNow(): void {
    this.stream?.retryNow();
  }

  private start(): void {
    if (this.stream) return;
    const onEvent = this.options.onEvent;
    this.stream = new ActivityStream({
      ...this.options,
      lastEventId: this.store.lastEventId,
      onEvent: (event: StreamEvent) => {
        this.store.apply(event);
        onEvent?.(event);
      },
      onStatus: (status, error) => {
        this.status = status;
        this.error = error;
        this.refresh();
      },
    });
    this.status = this.stream.status;
    this.error = null;
    this.refresh();
  }

  private stop(): void {
    this.stream?.close();
    this.stream = null;
  }

  private refresh(): void {
    const activities = this.store.getSnapshot();
    const s = this.state;
    if (
      s.activities === activities &&
      s.status === this.status &&
      s.error === this.error &&
      s.lastEventId === this.store.lastEventId &&
      s.organizationId === this.store.organizationId
    ) {
      return;
    }
    this.state = Object.freeze({
      activities,
      status: this.status,
      error: this.error,
      lastEventId: this.store.lastEventId,
      organizationId: this.store.organizationId,
    });
    for (const watcher of [...this.watchers]) watcher();
  }
}

export function createActivityFeed(options: ActivityFeedOptions): ActivityFeed {
  return new ActivityFeed(options);
}
