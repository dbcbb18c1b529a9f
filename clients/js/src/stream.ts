/**
 * connectActivityStream: one organization's events, resumed exactly across any drop.
 *
 * The stream remembers the last `seq` it delivered. After a drop (network, server restart,
 * deploy, the server's end of stream) it reconnects with that id, after a jittered exponential
 * backoff, and the server replays exactly what was missed: no gap, no repeat (an event at or
 * below the last seq is dropped, should one ever come twice). A `snapshot` with `reset: true`
 * (the id was too old or unknown) is delivered like any snapshot: it replaces everything.
 *
 * Tokens: `token` (fixed) or `getToken` (called for the first connection when there is no
 * `token`, when the server ends the stream because the token expired, and on a 401). A 401 that
 * a fresh token does not fix, a 400 (bad filter), 403 or 404, or getToken giving no token
 * (null, "" or UnauthorizedError) stop the stream with status "failed" and the error: retrying
 * cannot help. Anything else is retried for as long as the stream is open.
 *
 * State (activities) is not kept here: see ActivityStore, which subscribes to a stream.
 */

import { type BackoffOptions, backoffDelay } from "./backoff.js";
import { ActivityStreamError, UnauthorizedError } from "./errors.js";
import { type EndEvent, type StreamEvent, parseStreamEvent } from "./events.js";
import { type Transport, eventSourceTransport, fetchTransport } from "./transports.js";

export type StreamStatus = "connecting" | "live" | "reconnecting" | "failed" | "closed";

export interface StreamFilters {
  readonly sessionId?: string | undefined;
  readonly agentType?: string | undefined;
  readonly category?: string | undefined;
}

export type TokenReason = "initial" | "expired" | "unauthorized";

/** Returns a fresh token; null, "" or throwing UnauthorizedError mean "no access": the stream stops.
 * Any other error is retried with backoff. */
export type GetToken = (context: { readonly reason: TokenReason }) => Promise<string | null> | string | null;

export interface ActivityStreamOptions {
  /** The server's base URL ("" or omitted: this page's origin); the stream is at /api/activity/stream. */
  readonly url?: string;
  readonly token?: string | null;
  readonly getToken?: GetToken;
  /** Server-side filters: only matching activities and events are sent. */
  readonly filters?: StreamFilters;
  /** Resume after this seq (e.g. saved from an earlier stream) instead of starting with a snapshot. */
  readonly lastEventId?: number | null;
  /** "fetch" (default), "eventsource", or a Transport of your own. */
  readonly transport?: "fetch" | "eventsource" | Transport;
  readonly backoff?: BackoffOptions;
  /** For the fetch transport: end a connection that stays silent this long (ms); default 75000. */
  readonly idleTimeoutMs?: number;
  readonly fetch?: typeof fetch;
  readonly EventSource?: typeof EventSource;
  /** fetch transport: credentials mode; eventsource: withCredentials when "include". */
  readonly credentials?: RequestCredentials;
  readonly onEvent?: (event: StreamEvent) => void;
  readonly onStatus?: (status: StreamStatus, error: ActivityStreamError | null) => void;
}

export type EventListener = (event: StreamEvent) => void;
export type StatusListener = (status: StreamStatus, error: ActivityStreamError | null) => void;

export const STREAM_PATH = "/api/activity/stream";

export function joinUrl(base: string | undefined, path: string): string {
  return (base ?? "").replace(/\/+$/, "") + path;
}

function streamUrl(base: string | undefined, filters: StreamFilters | undefined): string {
  const params = new URLSearchParams();
  for (const key of ["sessionId", "agentType", "category"] as const) {
    const value = filters?.[key];
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  const query = params.toString();
  return joinUrl(base, STREAM_PATH) + (query ? `?${query}` : "");
}

function rethrowLater(error: unknown): void {
  setTimeout(() => {
    throw error;
  }, 0);
}

export class ActivityStream {
  private readonly listeners = new Set<EventListener>();
  private readonly statusListeners = new Set<StatusListener>();
  private readonly transport: Transport;
  private readonly url: string;
  private currentStatus: StreamStatus = "connecting";
  private currentError: ActivityStreamError | null = null;
  private lastSeq: number | null;
  private token: string | null;
  private connection: { close(): void } | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0; // failures since the last open
  private refreshed = false; // a fresh token was fetched since the last open
  private endReason: EndEvent["reason"] | null = null;
  private generation = 0; // increments per connection: callbacks of an older one are ignored
  private retryReason: { reason: TokenReason | null } | null = null; // set while a retry waits

  constructor(private readonly options: ActivityStreamOptions) {
    this.lastSeq = options.lastEventId ?? null;
    this.token = options.token ?? null;
    this.url = streamUrl(options.url, options.filters);
    const transport = options.transport ?? "fetch";
    if (typeof transport === "function") {
      this.transport = transport;
    } else if (transport === "eventsource") {
      const esOptions: { EventSource?: typeof EventSource; fetch?: typeof fetch; withCredentials?: boolean } = {
        withCredentials: options.credentials === "include",
      };
      if (options.EventSource) esOptions.EventSource = options.EventSource;
      if (options.fetch) esOptions.fetch = options.fetch;
      this.transport = eventSourceTransport(esOptions);
    } else {
      const fetchOptions: { fetch?: typeof fetch; credentials?: RequestCredentials; idleTimeoutMs?: number } = {};
      if (options.fetch) fetchOptions.fetch = options.fetch;
      if (options.credentials) fetchOptions.credentials = options.credentials;
      if (options.idleTimeoutMs !== undefined) fetchOptions.idleTimeoutMs = options.idleTimeoutMs;
      this.transport = fetchTransport(fetchOptions);
    }
    if (options.onEvent) this.listeners.add(options.onEvent);
    if (options.onStatus) this.statusListeners.add(options.onStatus);
    // Connect in a later task, so that subscribe() right after construction sees every event.
    this.timer = setTimeout(() => void this.connect(this.token === null && options.getToken ? "initial" : null), 0);
  }

  get status(): StreamStatus {
    return this.currentStatus;
  }

  /** The last error: the reason of a "failed" stream, or of the latest retry. */
  get error(): ActivityStreamError | null {
    return this.currentError;
  }

  /** The seq of the last event delivered: where a reconnection resumes. */
  get lastEventId(): number | null {
    return this.lastSeq;
  }

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onStatus(listener: StatusListener): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Reconnects now instead of at the end of the current backoff (e.g. when the browser is back
   * online); nothing happens unless a retry is waiting. */
  retryNow(): void {
    if (this.currentStatus !== "reconnecting" && this.currentStatus !== "connecting") return;
    if (this.connection || this.timer === undefined || !this.retryReason) return;
    const reason = this.retryReason.reason;
    clearTimeout(this.timer);
    this.timer = undefined;
    void this.connect(reason);
  }

  /** Ends the stream for good. */
  close(): void {
    if (this.currentStatus === "closed") return;
    this.stop();
    this.setStatus("closed", this.currentStatus === "failed" ? this.currentError : null);
  }

  private stop(): void {
    this.generation++;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.connection?.close();
    this.connection = null;
  }

  private setStatus(status: StreamStatus, error: ActivityStreamError | null): void {
    if (status === this.currentStatus && error === this.currentError) return;
    this.currentStatus = status;
    this.currentError = error;
    for (const listener of [...this.statusListeners]) {
      try {
        listener(status, error);
      } catch (e) {
        rethrowLater(e);
      }
    }
  }

  private fail(error: ActivityStreamError): void {
    this.stop();
    this.setStatus("failed", error);
  }

  /** Gets a token if `reason` says so, then opens one connection. */
  private async connect(reason: TokenReason | null): Promise<void> {
    const generation = ++this.generation;
    this.timer = undefined;
    this.retryReason = null;
    if (reason !== null && this.options.getToken) {
      let token: string | null;
      try {
        token = (await this.options.getToken({ reason })) ?? null;
      } catch (error) {
        if (generation !== this.generation) return;
        if (error instanceof UnauthorizedError) {
          this.fail(new ActivityStreamError("unauthorized", error.message || "getToken refused", null, { cause: error }));
          return;
        }
        const message = error instanceof Error ? error.message : String(error);
        this.retry(new ActivityStreamError("network", `getToken failed: ${message}`, null, { cause: error }), reason);
        return;
      }
      if (generation !== this.generation) return;
      if (!token) {
        this.fail(new ActivityStreamError("unauthorized", "getToken gave no token"));
        return;
      }
      this.token = token;
      if (reason !== "initial") this.refreshed = true;
    }
    this.endReason = null;
    this.connection = this.transport(
      { url: this.url, token: this.token, lastEventId: this.lastSeq },
      {
        onOpen: () => {
          if (generation !== this.generation) return;
          this.attempt = 0;
          this.refreshed = false;
          this.setStatus("live", null);
        },
        onMessage: (data) => {
          if (generation === this.generation) this.deliver(data);
        },
        onEnd: (end) => {
          if (generation !== this.generation) return;
          this.connection = null;
          if (end.kind === "ended") this.ended();
          else this.failed(end.error);
        },
      },
    );
  }

  private deliver(data: string): void {
    const event = parseStreamEvent(data);
    if (event === null) return;
    if (event.type === "end") {
      this.endReason = event.reason;
    } else if (event.type === "snapshot") {
      this.lastSeq = event.seq;
    } else {
      if (this.lastSeq !== null && event.seq <= this.lastSeq) return; // seen already
      this.lastSeq = event.seq;
    }
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (e) {
        rethrowLater(e);
      }
    }
  }

  /** The server ended the response (or an open connection dropped). */
  private ended(): void {
    if (this.endReason === "token_expired" && this.options.getToken) {
      this.setStatus("reconnecting", null);
      void this.connect("expired"); // a routine renewal: no delay
      return;
    }
    this.retry(new ActivityStreamError("network", this.endReason ? `the server ended the stream (${this.endReason})` : "the stream ended"), null);
  }

  private failed(error: ActivityStreamError): void {
    if (error.status === 401) {
      if (this.options.getToken && !this.refreshed) {
        this.setStatus("reconnecting", error);
        void this.connect("unauthorized");
        return;
      }
      this.fail(error);
      return;
    }
    if (error.status === 400 || error.status === 403 || error.status === 404) {
      this.fail(error);
      return;
    }
    this.retry(error, null);
  }

  private retry(error: ActivityStreamError, reason: TokenReason | null): void {
    const delay = backoffDelay(this.attempt, this.options.backoff);
    this.attempt++;
    this.setStatus(this.currentStatus === "connecting" && this.lastSeq === null ? "connecting" : "reconnecting", error);
    clearTimeout(this.timer);
    const generation = ++this.generation;
    this.retryReason = { reason };
    this.timer = setTimeout(() => {
      if (generation === this.generation) void this.connect(reason);
    }, delay);
  }
}

/** Opens the stream of the token's organization; see ActivityStream. */
export function connectActivityStream(options: ActivityStreamOptions): ActivityStream {
  return new ActivityStream(options);
}
