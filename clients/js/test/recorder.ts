// A stream with a store, for the tests against the real server: every event and status kept,
// and `until` to wait on a condition, checked after each event, status change or store change
// (so tests wait on what happens, never on time).
import {
  type ActivityStream,
  ActivityStore,
  type ActivityStoreOptions,
  type StreamEvent,
  type StreamStatus,
  connectActivityStream,
} from "../src/index.js";
import type { ActivityStreamOptions } from "../src/stream.js";

export const FAST = { initialMs: 50, maxMs: 500 };

export class Recorder {
  readonly events: StreamEvent[] = [];
  readonly statuses: StreamStatus[] = [];
  readonly store: ActivityStore;
  readonly stream: ActivityStream;
  private readonly waiters = new Set<() => void>();

  constructor(options: ActivityStreamOptions, storeOptions: ActivityStoreOptions = {}) {
    this.store = new ActivityStore(storeOptions);
    this.stream = connectActivityStream({ backoff: FAST, ...options });
    this.store.attach(this.stream);
    this.store.subscribe(() => this.poke());
    this.stream.subscribe((event) => {
      this.events.push(event);
      this.poke();
    });
    this.stream.onStatus((status) => {
      this.statuses.push(status);
      this.poke();
    });
  }

  private poke(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  until(check: (r: this) => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiter = () => {
        if (!check(this)) return;
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`timed out waiting for ${what}; status ${this.stream.status} ${this.stream.error?.message ?? ""}; seqs ${JSON.stringify(this.seqs())}`));
      }, timeoutMs);
      this.waiters.add(waiter);
      waiter();
    });
  }

  /** seq of every activity event (not snapshots). */
  seqs(): number[] {
    return this.events.flatMap((e) => (e.type !== "snapshot" && e.type !== "end" ? [e.seq] : []));
  }

  snapshots() {
    return this.events.filter((e) => e.type === "snapshot");
  }

  close(): void {
    this.stream.close();
  }
}
