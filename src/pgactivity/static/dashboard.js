// Generated from clients/js (npm run build): edit dashboard/*.ts and src/*.ts there, not this file.
"use strict";
(() => {
  // src/errors.ts
  var ActivityStreamError = class extends Error {
    constructor(code, message, status = null, options) {
      super(message, options);
      this.code = code;
      this.status = status;
      this.name = "ActivityStreamError";
    }
  };
  var UnauthorizedError = class extends Error {
    constructor() {
      super(...arguments);
      this.name = "UnauthorizedError";
    }
  };
  var CODES = { 400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found" };
  async function responseError(response) {
    let code = CODES[response.status] ?? "http_error";
    let message = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      if (body && typeof body.error === "object" && body.error !== null) {
        if (typeof body.error.code === "string") code = body.error.code;
        if (typeof body.error.message === "string") message = body.error.message;
      }
    } catch {
    }
    return new ActivityStreamError(code, message, response.status);
  }

  // src/backoff.ts
  var DEFAULT_BACKOFF = { initialMs: 1e3, maxMs: 3e4 };
  function backoffDelay(attempt, options = {}, random = Math.random) {
    const initial = options.initialMs ?? DEFAULT_BACKOFF.initialMs;
    const max = options.maxMs ?? DEFAULT_BACKOFF.maxMs;
    const base = Math.min(max, initial * 2 ** Math.min(attempt, 30));
    return Math.round(base / 2 + random() * (base / 2));
  }

  // src/events.ts
  var AGENT_TYPES = /* @__PURE__ */ new Set(["agent_started", "agent_progress", "agent_completed", "agent_failed"]);
  function parseStreamEvent(text) {
    let value;
    try {
      value = JSON.parse(text);
    } catch {
      return null;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
    const event = value;
    if (event.type === "end") return value;
    if (!Number.isSafeInteger(event.seq) || event.seq < 0) return null;
    if (event.type === "snapshot") return Array.isArray(event.activities) ? value : null;
    if (typeof event.type === "string" && AGENT_TYPES.has(event.type) && typeof event.activityId === "string") {
      if (typeof event.data !== "object" || event.data === null) value.data = {};
      return value;
    }
    return null;
  }

  // src/sse.ts
  var LF = 10;
  var CR = 13;
  var SseParser = class {
    constructor(handlers) {
      this.handlers = handlers;
      this.decoder = new TextDecoder("utf-8", { ignoreBOM: false });
      this.buffer = "";
      // decoded text not yet split into lines
      this.afterCr = false;
      // the last chunk ended with CR: an LF first in the next one is part of it
      this.data = [];
      this.eventType = "";
      this.lastEventIdBuffer = "";
      this.lastEventIdString = "";
    }
    /** The event source's last event id: set at each blank line from the last `id:` field seen
     * (it persists across events), what a reconnect sends as Last-Event-ID. */
    get lastEventId() {
      return this.lastEventIdString;
    }
    /** Feeds the next chunk of the body. */
    push(chunk) {
      this.feedText(this.decoder.decode(chunk, { stream: true }));
    }
    /** The body ended: flushes the decoder; an event without its blank line is dropped (WHATWG). */
    end() {
      this.feedText(this.decoder.decode());
      this.buffer = "";
      this.afterCr = false;
      this.data = [];
      this.eventType = "";
    }
    feedText(text) {
      if (text === "") return;
      let start = 0;
      if (this.afterCr) {
        this.afterCr = false;
        if (text.charCodeAt(0) === LF) start = 1;
      }
      let lineStart = start;
      for (let i = start; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c !== LF && c !== CR) continue;
        const line = this.buffer + text.slice(lineStart, i);
        this.buffer = "";
        if (c === CR) {
          if (i + 1 < text.length) {
            if (text.charCodeAt(i + 1) === LF) i++;
          } else {
            this.afterCr = true;
          }
        }
        lineStart = i + 1;
        this.line(line);
      }
      if (lineStart < text.length) this.buffer += text.slice(lineStart);
    }
    line(line) {
      if (line === "") {
        this.dispatch();
        return;
      }
      const colon = line.indexOf(":");
      if (colon === 0) {
        this.handlers.onComment?.(line.slice(1));
        return;
      }
      let field;
      let value;
      if (colon < 0) {
        field = line;
        value = "";
      } else {
        field = line.slice(0, colon);
        value = line.charCodeAt(colon + 1) === 32 ? line.slice(colon + 2) : line.slice(colon + 1);
      }
      switch (field) {
        case "event":
          this.eventType = value;
          break;
        case "data":
          this.data.push(value);
          break;
        case "id":
          if (!value.includes("\0")) this.lastEventIdBuffer = value;
          break;
        case "retry":
          if (/^[0-9]+$/.test(value)) this.handlers.onRetry?.(Number.parseInt(value, 10));
          break;
        default:
          break;
      }
    }
    dispatch() {
      const data = this.data;
      const type = this.eventType;
      this.data = [];
      this.eventType = "";
      this.lastEventIdString = this.lastEventIdBuffer;
      if (data.length === 0) return;
      this.handlers.onMessage({ event: type || "message", data: data.join("\n"), lastEventId: this.lastEventIdString });
    }
  };

  // src/transports.ts
  function withQuery(url, params) {
    const query = new URLSearchParams(params).toString();
    if (!query) return url;
    return url + (url.includes("?") ? "&" : "?") + query;
  }
  function fetchTransport(options = {}) {
    const idleTimeoutMs = options.idleTimeoutMs ?? 75e3;
    return (request, handlers) => {
      const controller = new AbortController();
      let closed = false;
      let idleTimer;
      const end = (value) => {
        if (closed) return;
        closed = true;
        clearTimeout(idleTimer);
        controller.abort();
        handlers.onEnd(value);
      };
      const alive = () => {
        if (idleTimeoutMs <= 0 || closed) return;
        clearTimeout(idleTimer);
        idleTimer = setTimeout(() => {
          end({ kind: "failed", error: new ActivityStreamError("network", `no data for ${idleTimeoutMs} ms`) });
        }, idleTimeoutMs);
      };
      const run = async () => {
        const headers = { Accept: "text/event-stream" };
        if (request.token) headers["Authorization"] = `Bearer ${request.token}`;
        if (request.lastEventId !== null) headers["Last-Event-ID"] = String(request.lastEventId);
        const doFetch = options.fetch ?? globalThis.fetch;
        const init2 = { headers, signal: controller.signal };
        if (options.credentials) init2.credentials = options.credentials;
        alive();
        const response = await doFetch(request.url, init2);
        if (!response.ok) {
          end({ kind: "failed", error: await responseError(response) });
          return;
        }
        const type = response.headers.get("content-type") ?? "";
        if (!type.toLowerCase().startsWith("text/event-stream") || !response.body) {
          end({ kind: "failed", error: new ActivityStreamError("protocol", `not an event stream: ${type || "no content type"}`, response.status) });
          return;
        }
        if (closed) return;
        handlers.onOpen();
        const parser = new SseParser({
          onMessage: (message) => {
            if (!closed) handlers.onMessage(message.data);
          }
        });
        const reader = response.body.getReader();
        try {
          for (; ; ) {
            const { done, value } = await reader.read();
            if (closed) return;
            alive();
            if (done) break;
            parser.push(value);
          }
        } finally {
          reader.releaseLock();
        }
        parser.end();
        end({ kind: "ended" });
      };
      run().catch((error) => {
        if (closed) return;
        end({ kind: "failed", error: new ActivityStreamError("network", errorMessage(error), null, { cause: error }) });
      });
      return {
        close() {
          if (closed) return;
          closed = true;
          clearTimeout(idleTimer);
          controller.abort();
        }
      };
    };
  }
  function eventSourceTransport(options = {}) {
    return (request, handlers) => {
      const Source = options.EventSource ?? globalThis.EventSource;
      if (typeof Source !== "function") throw new Error("no EventSource here: use the fetch transport");
      const params = {};
      if (request.token) params["access_token"] = request.token;
      if (request.lastEventId !== null) params["lastEventId"] = String(request.lastEventId);
      const url = withQuery(request.url, params);
      const source = new Source(url, { withCredentials: options.withCredentials ?? false });
      let closed = false;
      let opened = false;
      const probe = new AbortController();
      const end = (value) => {
        if (closed) return;
        closed = true;
        source.close();
        handlers.onEnd(value);
      };
      source.onopen = () => {
        if (closed) return;
        opened = true;
        handlers.onOpen();
      };
      source.onmessage = (message) => {
        if (!closed) handlers.onMessage(message.data);
      };
      source.onerror = () => {
        if (closed) return;
        const gaveUp = source.readyState === Source.CLOSED;
        source.close();
        if (!gaveUp) {
          end(opened ? { kind: "ended" } : { kind: "failed", error: new ActivityStreamError("network", "cannot connect") });
          return;
        }
        const doFetch = options.fetch ?? globalThis.fetch;
        const init2 = { signal: probe.signal, credentials: options.withCredentials ? "include" : "same-origin" };
        doFetch(url, init2).then(async (response) => {
          const error = response.ok ? new ActivityStreamError("protocol", "the stream failed") : await responseError(response);
          probe.abort();
          end({ kind: "failed", error });
        }).catch((error) => {
          end({ kind: "failed", error: new ActivityStreamError("network", errorMessage(error), null, { cause: error }) });
        });
      };
      return {
        close() {
          if (closed) return;
          closed = true;
          probe.abort();
          source.close();
        }
      };
    };
  }
  function errorMessage(error) {
    if (error instanceof Error) {
      const cause = error.cause;
      return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
    }
    return String(error);
  }

  // src/stream.ts
  var STREAM_PATH = "/api/activity/stream";
  function joinUrl(base, path) {
    return (base ?? "").replace(/\/+$/, "") + path;
  }
  function streamUrl(base, filters) {
    const params = new URLSearchParams();
    for (const key of ["sessionId", "agentType", "category"]) {
      const value = filters?.[key];
      if (value !== void 0 && value !== null && value !== "") params.set(key, value);
    }
    const query = params.toString();
    return joinUrl(base, STREAM_PATH) + (query ? `?${query}` : "");
  }
  function rethrowLater(error) {
    setTimeout(() => {
      throw error;
    }, 0);
  }
  var ActivityStream = class {
    // set while a retry waits
    constructor(options) {
      this.options = options;
      this.listeners = /* @__PURE__ */ new Set();
      this.statusListeners = /* @__PURE__ */ new Set();
      this.currentStatus = "connecting";
      this.currentError = null;
      this.connection = null;
      this.attempt = 0;
      // failures since the last open
      this.refreshed = false;
      // a fresh token was fetched since the last open
      this.endReason = null;
      this.generation = 0;
      // increments per connection: callbacks of an older one are ignored
      this.retryReason = null;
      this.lastSeq = options.lastEventId ?? null;
      this.token = options.token ?? null;
      this.url = streamUrl(options.url, options.filters);
      const transport = options.transport ?? "fetch";
      if (typeof transport === "function") {
        this.transport = transport;
      } else if (transport === "eventsource") {
        const esOptions = {
          withCredentials: options.credentials === "include"
        };
        if (options.EventSource) esOptions.EventSource = options.EventSource;
        if (options.fetch) esOptions.fetch = options.fetch;
        this.transport = eventSourceTransport(esOptions);
      } else {
        const fetchOptions = {};
        if (options.fetch) fetchOptions.fetch = options.fetch;
        if (options.credentials) fetchOptions.credentials = options.credentials;
        if (options.idleTimeoutMs !== void 0) fetchOptions.idleTimeoutMs = options.idleTimeoutMs;
        this.transport = fetchTransport(fetchOptions);
      }
      if (options.onEvent) this.listeners.add(options.onEvent);
      if (options.onStatus) this.statusListeners.add(options.onStatus);
      this.timer = setTimeout(() => void this.connect(this.token === null && options.getToken ? "initial" : null), 0);
    }
    get status() {
      return this.currentStatus;
    }
    /** The last error: the reason of a "failed" stream, or of the latest retry. */
    get error() {
      return this.currentError;
    }
    /** The seq of the last event delivered: where a reconnection resumes. */
    get lastEventId() {
      return this.lastSeq;
    }
    subscribe(listener) {
      this.listeners.add(listener);
      return () => this.listeners.delete(listener);
    }
    onStatus(listener) {
      this.statusListeners.add(listener);
      return () => this.statusListeners.delete(listener);
    }
    /** Reconnects now instead of at the end of the current backoff (e.g. when the browser is back
     * online); nothing happens unless a retry is waiting. */
    retryNow() {
      if (this.currentStatus !== "reconnecting" && this.currentStatus !== "connecting") return;
      if (this.connection || this.timer === void 0 || !this.retryReason) return;
      const reason = this.retryReason.reason;
      clearTimeout(this.timer);
      this.timer = void 0;
      void this.connect(reason);
    }
    /** Ends the stream for good. */
    close() {
      if (this.currentStatus === "closed") return;
      this.stop();
      this.setStatus("closed", this.currentStatus === "failed" ? this.currentError : null);
    }
    stop() {
      this.generation++;
      clearTimeout(this.timer);
      this.timer = void 0;
      this.connection?.close();
      this.connection = null;
    }
    setStatus(status, error) {
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
    fail(error) {
      this.stop();
      this.setStatus("failed", error);
    }
    /** Gets a token if `reason` says so, then opens one connection. */
    async connect(reason) {
      const generation = ++this.generation;
      this.timer = void 0;
      this.retryReason = null;
      if (reason !== null && this.options.getToken) {
        let token;
        try {
          token = await this.options.getToken({ reason }) ?? null;
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
          }
        }
      );
    }
    deliver(data) {
      const event = parseStreamEvent(data);
      if (event === null) return;
      if (event.type === "end") {
        this.endReason = event.reason;
      } else if (event.type === "snapshot") {
        this.lastSeq = event.seq;
      } else {
        if (this.lastSeq !== null && event.seq <= this.lastSeq) return;
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
    ended() {
      if (this.endReason === "token_expired" && this.options.getToken) {
        this.setStatus("reconnecting", null);
        void this.connect("expired");
        return;
      }
      this.retry(new ActivityStreamError("network", this.endReason ? `the server ended the stream (${this.endReason})` : "the stream ended"), null);
    }
    failed(error) {
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
    retry(error, reason) {
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
  };

  // src/api.ts
  function queryString(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value === void 0 || value === null || value === "") continue;
      search.set(key, value instanceof Date ? value.toISOString() : String(value));
    }
    const text = search.toString();
    return text ? `?${text}` : "";
  }
  var ActivityApi = class {
    constructor(options = {}) {
      this.options = options;
      this.token = options.token ?? null;
    }
    /** One page of the organization's activities, newest first. */
    search(params = {}, init2 = {}) {
      return this.json(`/api/activities${queryString({ ...params })}`, init2.signal);
    }
    /** Every matching activity, newest first, page after page (follows nextCursor). */
    async *searchAll(params = {}, init2 = {}) {
      let cursor = params.cursor ?? null;
      do {
        const page = await this.search({ ...params, cursor }, init2);
        yield* page.items;
        cursor = page.nextCursor;
      } while (cursor);
    }
    /** One whole activity (never truncated); null when there is none in the token's organization. */
    async getActivity(id, init2 = {}) {
      try {
        return await this.json(`/api/activities/${encodeURIComponent(id)}`, init2.signal);
      } catch (error) {
        if (error instanceof ActivityStreamError && error.status === 404) return null;
        throw error;
      }
    }
    /** A page of one activity's events, in seq order; null when there is no such activity. */
    async getActivityEvents(id, params = {}, init2 = {}) {
      try {
        return await this.json(`/api/activities/${encodeURIComponent(id)}/events${queryString({ ...params })}`, init2.signal);
      } catch (error) {
        if (error instanceof ActivityStreamError && error.status === 404) return null;
        throw error;
      }
    }
    async json(path, signal) {
      const { getToken } = this.options;
      if (this.token === null && getToken) this.token = await this.freshToken(getToken, "initial");
      let response = await this.request(path, signal);
      if (response.status === 401 && getToken) {
        this.token = await this.freshToken(getToken, "unauthorized");
        response = await this.request(path, signal);
      }
      if (!response.ok) throw await responseError(response);
      return await response.json();
    }
    async freshToken(getToken, reason) {
      let token;
      try {
        token = await getToken({ reason });
      } catch (error) {
        if (error instanceof UnauthorizedError) throw new ActivityStreamError("unauthorized", error.message || "getToken refused", null, { cause: error });
        throw error;
      }
      if (!token) throw new ActivityStreamError("unauthorized", "getToken gave no token");
      return token;
    }
    request(path, signal) {
      const headers = { Accept: "application/json" };
      if (this.token) headers["Authorization"] = `Bearer ${this.token}`;
      const init2 = { headers };
      if (signal) init2.signal = signal;
      if (this.options.credentials) init2.credentials = this.options.credentials;
      return (this.options.fetch ?? globalThis.fetch)(joinUrl(this.options.url, path), init2);
    }
  };

  // src/store.ts
  var EVENT_FIELDS = {
    agent_started: ["inputData", "metadata"],
    agent_progress: ["message"],
    agent_completed: ["outputData"],
    agent_failed: ["error"]
  };
  function sortKey(activity) {
    return activity.createdAt ?? activity.updatedAt ?? "";
  }
  function newestFirst(a, b) {
    const ka = sortKey(a);
    const kb = sortKey(b);
    if (ka !== kb) return ka < kb ? 1 : -1;
    if (a.id === b.id) return 0;
    return a.id < b.id ? 1 : -1;
  }
  function matches(filters, a) {
    if (!filters) return true;
    if (filters.sessionId && a.sessionId !== filters.sessionId) return false;
    if (filters.agentType && a.agentType !== filters.agentType) return false;
    if (filters.category && a.category !== filters.category) return false;
    return true;
  }
  var ActivityStore = class {
    constructor(options = {}) {
      this.options = options;
      this.byId = /* @__PURE__ */ new Map();
      this.listeners = /* @__PURE__ */ new Set();
      this.loading = /* @__PURE__ */ new Map();
      this.sorted = [];
      this.seq = null;
      this.organization = null;
      this.snapshotCount = 0;
      /** The activities, newest first; the same array until something changes. */
      this.getSnapshot = () => {
        if (this.sorted === null) this.sorted = Object.freeze([...this.byId.values()].sort(newestFirst));
        return this.sorted;
      };
      /** Calls `listener` after each change. */
      this.subscribe = (listener) => {
        this.listeners.add(listener);
        return () => {
          this.listeners.delete(listener);
        };
      };
      this.limit = options.limit ?? 1e3;
    }
    get(id) {
      return this.byId.get(id);
    }
    get size() {
      return this.byId.size;
    }
    /** The seq of the last event applied. */
    get lastEventId() {
      return this.seq;
    }
    get organizationId() {
      return this.organization;
    }
    /** How many snapshots were applied (more than one: the stream was reset). */
    get snapshots() {
      return this.snapshotCount;
    }
    /** Applies every event of `stream` from now on; returns the unsubscribe function. */
    attach(stream) {
      return stream.subscribe((event) => this.apply(event));
    }
    apply(event) {
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
          return;
      }
      this.trim();
      this.changed();
    }
    /** Forgets everything (e.g. before connecting with another token). */
    clear() {
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
    load(id) {
      const current = this.byId.get(id);
      if (!current?.truncated?.length || !this.options.loadActivity) return Promise.resolve(current);
      const pending = this.loading.get(id);
      if (pending) return pending;
      const promise = this.options.loadActivity(id).then((row) => {
        const now = this.byId.get(id);
        if (!now || !row || !now.truncated?.length) return now;
        const merged = { ...now };
        for (const field of now.truncated) merged[field] = row[field];
        delete merged.truncated;
        this.byId.set(id, merged);
        this.changed();
        return merged;
      }).finally(() => this.loading.delete(id));
      this.loading.set(id, promise);
      return promise;
    }
    update(event) {
      const previous = this.byId.get(event.activityId);
      if (!matches(this.options.filters, event)) {
        if (previous) this.byId.delete(event.activityId);
        return;
      }
      const next = previous ? { ...previous } : {
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
        completedAt: null
      };
      next.sessionId = event.sessionId ?? null;
      next.agentType = event.agentType ?? next.agentType;
      next.agentName = event.agentName ?? null;
      next.category = event.category ?? null;
      next.updatedAt = event.timestamp ?? next.updatedAt;
      const status = event.status;
      switch (event.type) {
        case "agent_started":
          next.status = status ?? "running";
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
    trim() {
      if (this.byId.size <= this.limit) return;
      const finished = [...this.byId.values()].filter((a) => a.status !== "running").sort(newestFirst);
      while (this.byId.size > this.limit && finished.length) {
        const oldest = finished.pop();
        if (oldest) this.byId.delete(oldest.id);
      }
    }
    changed() {
      this.sorted = null;
      for (const listener of [...this.listeners]) listener();
    }
  };

  // src/feed.ts
  var IDLE = Object.freeze({
    activities: Object.freeze([]),
    status: "connecting",
    error: null,
    lastEventId: null,
    organizationId: null
  });
  var ActivityFeed = class {
    constructor(options) {
      this.options = options;
      this.stream = null;
      this.watchers = /* @__PURE__ */ new Set();
      this.state = IDLE;
      this.status = "connecting";
      this.error = null;
      this.getState = () => this.state;
      this.subscribe = (listener) => {
        this.watchers.add(listener);
        if (this.watchers.size === 1) this.start();
        return () => {
          if (!this.watchers.delete(listener)) return;
          if (this.watchers.size === 0) this.stop();
        };
      };
      const apiOptions = {};
      if (options.url !== void 0) apiOptions.url = options.url;
      if (options.token !== void 0) apiOptions.token = options.token;
      if (options.getToken) apiOptions.getToken = options.getToken;
      if (options.fetch) apiOptions.fetch = options.fetch;
      if (options.credentials) apiOptions.credentials = options.credentials;
      this.api = new ActivityApi(apiOptions);
      const storeOptions = {
        loadActivity: (id) => this.api.getActivity(id)
      };
      if (options.filters) storeOptions.filters = options.filters;
      if (options.limit !== void 0) storeOptions.limit = options.limit;
      this.store = new ActivityStore(storeOptions);
      this.store.subscribe(() => this.refresh());
    }
    /** The whole activity (fetches truncated fields); see ActivityStore.load. */
    load(id) {
      return this.store.load(id);
    }
    /** See ActivityStream.retryNow. */
    retryNow() {
      this.stream?.retryNow();
    }
    start() {
      if (this.stream) return;
      const onEvent = this.options.onEvent;
      this.stream = new ActivityStream({
        ...this.options,
        lastEventId: this.store.lastEventId,
        onEvent: (event) => {
          this.store.apply(event);
          onEvent?.(event);
        },
        onStatus: (status, error) => {
          this.status = status;
          this.error = error;
          this.refresh();
        }
      });
      this.status = this.stream.status;
      this.error = null;
      this.refresh();
    }
    stop() {
      this.stream?.close();
      this.stream = null;
    }
    refresh() {
      const activities2 = this.store.getSnapshot();
      const s = this.state;
      if (s.activities === activities2 && s.status === this.status && s.error === this.error && s.lastEventId === this.store.lastEventId && s.organizationId === this.store.organizationId) {
        return;
      }
      this.state = Object.freeze({
        activities: activities2,
        status: this.status,
        error: this.error,
        lastEventId: this.store.lastEventId,
        organizationId: this.store.organizationId
      });
      for (const watcher of [...this.watchers]) watcher();
    }
  };

  // dashboard/json.ts
  function formatJson(value, maxChars = 2e5, maxIndent = 32) {
    const out = [];
    let length = 0;
    const emit = (text2) => {
      out.push(text2);
      length += text2.length;
    };
    const newline = (depth) => depth <= maxIndent ? `
${"  ".repeat(depth)}` : "";
    const stack = [];
    const open = (v) => {
      if (v === null || typeof v !== "object") {
        const text2 = JSON.stringify(v);
        emit(text2 === void 0 ? "null" : text2);
        return;
      }
      if (Array.isArray(v)) {
        if (v.length === 0) emit("[]");
        else {
          emit("[");
          stack.push({ array: v, keys: [], object: null, index: 0 });
        }
        return;
      }
      const object = v;
      const keys = Object.keys(object);
      if (keys.length === 0) emit("{}");
      else {
        emit("{");
        stack.push({ array: null, keys, object, index: 0 });
      }
    };
    open(value);
    while (stack.length > 0 && length < maxChars) {
      const top = stack[stack.length - 1];
      const size = top.array ? top.array.length : top.keys.length;
      if (top.index < size) {
        const depth = stack.length;
        if (top.index > 0) emit(",");
        emit(newline(depth));
        let child;
        if (top.array) child = top.array[top.index];
        else {
          const key = top.keys[top.index];
          emit(`${JSON.stringify(key)}: `);
          child = top.object[key];
        }
        top.index++;
        open(child);
      } else {
        stack.pop();
        emit(newline(stack.length));
        emit(top.array ? "]" : "}");
      }
    }
    let text = out.join("");
    if (stack.length > 0 || text.length > maxChars) text = `${text.slice(0, maxChars)}
… (cut: longer than ${maxChars} characters)`;
    return text;
  }

  // dashboard/dashboard.ts
  var TOKEN_KEY = "pgactivity.token";
  var MAX_ACTIVITIES = 500;
  var STATUS_LABELS = { running: "Running", completed: "Completed", failed: "Failed" };
  function $(id) {
    return document.getElementById(id);
  }
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== void 0 && text !== null) node.textContent = String(text);
    return node;
  }
  var ui = {
    token: null,
    feed: null,
    unsubscribe: null,
    state: null,
    rows: /* @__PURE__ */ new Map(),
    expanded: /* @__PURE__ */ new Set(),
    fresh: /* @__PURE__ */ new Set(),
    // ids started since the last render (highlighted once)
    unloadable: /* @__PURE__ */ new Set(),
    // truncated fields that GET /api/activities/{id} could not give
    renderQueued: false,
    filters: { status: "", agentType: "", text: "" }
  };
  var storage = {
    get() {
      try {
        return sessionStorage.getItem(TOKEN_KEY);
      } catch {
        return null;
      }
    },
    set(value) {
      try {
        sessionStorage.setItem(TOKEN_KEY, value);
      } catch {
      }
    },
    clear() {
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch {
      }
    }
  };
  function takeTokenFromUrl() {
    const url = new URL(window.location.href);
    const token = url.searchParams.get("access_token");
    if (token === null) return null;
    url.searchParams.delete("access_token");
    window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
    return token.trim() || null;
  }
  function activities() {
    return ui.state?.activities ?? [];
  }
  function showTokenForm(message) {
    $("board").hidden = activities().length === 0;
    $("token-form").hidden = false;
    $("change-token").hidden = true;
    const error = $("token-error");
    error.hidden = !message;
    error.textContent = message;
    $("token-input").focus();
  }
  function stopFeed() {
    ui.unsubscribe?.();
    ui.unsubscribe = null;
  }
  function useToken(token) {
    const changed = token !== ui.token;
    ui.token = token;
    storage.set(token);
    $("token-form").hidden = true;
    $("token-input").value = "";
    $("board").hidden = false;
    $("change-token").hidden = false;
    stopFeed();
    if (changed || !ui.feed) {
      ui.feed = new ActivityFeed({
        transport: "eventsource",
        token,
        limit: MAX_ACTIVITIES,
        backoff: { initialMs: 1e3, maxMs: 3e4 },
        onEvent: noteFresh
      });
      ui.state = ui.feed.getState();
      ui.expanded.clear();
      for (const row of ui.rows.values()) {
        row.tr.remove();
        row.detail?.remove();
      }
      ui.rows.clear();
    }
    const feed = ui.feed;
    ui.unsubscribe = feed.subscribe(() => onState(feed));
    onState(feed);
  }
  function noteFresh(event) {
    if (event.type === "agent_started") ui.fresh.add(event.activityId);
  }
  function setConnection(name, label) {
    $("conn").dataset["state"] = name;
    $("conn-label").textContent = label;
    document.documentElement.dataset["connection"] = name;
  }
  function onState(feed) {
    if (feed !== ui.feed) return;
    const previous = ui.state;
    const state = feed.getState();
    ui.state = state;
    if (!previous || previous.status !== state.status || previous.error !== state.error) showStatus(state);
    scheduleRender();
  }
  function showStatus(state) {
    switch (state.status) {
      case "connecting":
        setConnection("connecting", "Connecting…");
        break;
      case "live":
        setConnection("live", "Live");
        break;
      case "reconnecting":
        setConnection("reconnecting", "Reconnecting…");
        break;
      case "closed":
        setConnection("idle", "Not connected");
        break;
      case "failed": {
        const error = state.error;
        stopFeed();
        if (error && (error.status === 401 || error.status === 403 || error.code === "unauthorized")) {
          setConnection("unauthorized", "Unauthorized");
          storage.clear();
          showTokenForm(`The server refused this token${error.message ? `: ${error.message}` : "."}`);
        } else {
          setConnection("error", "Error");
          showTokenForm(error?.message || "The server refused the request.");
        }
        break;
      }
    }
  }
  function scheduleRender() {
    if (ui.renderQueued) return;
    ui.renderQueued = true;
    requestAnimationFrame(() => {
      ui.renderQueued = false;
      render();
    });
  }
  var timeFormat = new Intl.DateTimeFormat(void 0, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  var dateFormat = new Intl.DateTimeFormat(void 0, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  var fullFormat = new Intl.DateTimeFormat(void 0, { dateStyle: "medium", timeStyle: "medium" });
  function parseTime(iso) {
    if (typeof iso !== "string") return null;
    const ms = Date.parse(iso);
    return Number.isNaN(ms) ? null : ms;
  }
  function formatStarted(iso) {
    const ms = parseTime(iso);
    if (ms === null) return "—";
    const date = new Date(ms);
    return date.toDateString() === (/* @__PURE__ */ new Date()).toDateString() ? timeFormat.format(date) : dateFormat.format(date);
  }
  function formatDuration(ms) {
    const clamped = Math.max(0, ms);
    if (clamped < 1e3) return `${Math.round(clamped)}ms`;
    const seconds = clamped / 1e3;
    if (seconds < 60) return `${seconds.toFixed(1)}s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes}m ${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours}h ${String(minutes % 60).padStart(2, "0")}m`;
    return `${Math.floor(hours / 24)}d ${hours % 24}h`;
  }
  function duration(a) {
    const start = parseTime(a.createdAt);
    if (start === null) return "—";
    const end = a.status === "running" ? Date.now() : parseTime(a.completedAt) ?? parseTime(a.updatedAt);
    return end === null ? "—" : formatDuration(end - start);
  }
  function percent(a) {
    if (a.status === "completed") return 100;
    return typeof a.progress === "number" && Number.isFinite(a.progress) ? Math.min(100, Math.max(0, a.progress)) : null;
  }
  function createRow(id) {
    const tr = el("tr", "activity");
    tr.dataset["id"] = id;
    const badge = el("span", "badge");
    const name = el("div", "cell-main");
    const kind = el("div", "cell-sub");
    const fill = el("div", "fill");
    const bar = el("div", "bar");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.append(fill);
    const pct = el("span", "pct");
    const progress = el("div", "progress");
    progress.append(bar, pct);
    const message = el("div", "message");
    const session = el("div", "session mono");
    const started = el("td", "started");
    const elapsed = el("td", "duration");
    const cell = (...children) => {
      const td = el("td");
      td.append(...children);
      return td;
    };
    const sessionCell = cell(session);
    sessionCell.className = "session-cell";
    tr.append(cell(badge), cell(name, kind), cell(progress), cell(message), sessionCell, started, elapsed);
    tr.addEventListener("click", () => {
      if (window.getSelection && String(window.getSelection()).length) return;
      if (ui.expanded.has(id)) ui.expanded.delete(id);
      else {
        ui.expanded.add(id);
        if (ui.state?.activities.find((a) => a.id === id)?.truncated?.length) loadWhole(id);
      }
      scheduleRender();
    });
    return { tr, badge, name, kind, bar, fill, pct, message, session, started, elapsed, detail: null, shown: null, detailOf: null };
  }
  function loadWhole(id) {
    const feed = ui.feed;
    if (!feed) return;
    ui.unloadable.delete(id);
    const failed = () => {
      ui.unloadable.add(id);
      const row = ui.rows.get(id);
      if (row) row.detailOf = null;
      scheduleRender();
    };
    feed.load(id).then((a) => {
      if (a?.truncated?.length) failed();
    }, failed);
  }
  function fillRow(row, a) {
    const status = STATUS_LABELS[a.status] ? a.status : "running";
    row.tr.dataset["status"] = status;
    row.badge.className = `badge ${status}`;
    row.badge.textContent = STATUS_LABELS[status] ?? status;
    row.name.textContent = a.agentName || a.agentType || "—";
    row.name.title = a.agentName || "";
    row.kind.textContent = [a.agentType, a.category].filter(Boolean).join(" · ");
    const pct = percent(a);
    row.fill.className = `fill ${status}`;
    row.fill.style.width = `${pct ?? 0}%`;
    row.pct.textContent = pct === null ? "—" : `${pct}%`;
    if (pct === null) row.bar.removeAttribute("aria-valuenow");
    else row.bar.setAttribute("aria-valuenow", String(pct));
    const text = status === "failed" && a.error ? a.error : a.message;
    row.message.textContent = text || "—";
    row.message.title = text || "";
    row.message.className = status === "failed" ? "message failed" : "message";
    row.session.textContent = a.sessionId || "—";
    row.session.title = a.sessionId || "";
    row.started.textContent = formatStarted(a.createdAt);
    const ms = parseTime(a.createdAt);
    row.started.title = ms === null ? "" : fullFormat.format(new Date(ms));
    row.elapsed.textContent = duration(a);
    row.shown = a;
  }
  function detailRow(row, a) {
    if (!row.detail) {
      row.detail = el("tr", "detail");
      row.detail.dataset["id"] = a.id;
    }
    const td = el("td");
    td.colSpan = 7;
    const grid = el("dl", "detail-grid");
    const fields = [
      ["Activity", a.id],
      ["Session", a.sessionId],
      ["Agent type", a.agentType],
      ["Category", a.category],
      ["Created", a.createdAt],
      ["Updated", a.updatedAt],
      ["Completed", a.completedAt],
      ["Status", a.status]
    ];
    for (const [label, value] of fields) grid.append(el("dt", null, label), el("dd", "mono", value ?? "—"));
    const blocks = el("div", "detail-json");
    const truncated = new Set(a.truncated ?? []);
    const sections = [["Input", "inputData", a.inputData], ["Metadata", "metadata", a.metadata], ["Output", "outputData", a.outputData]];
    if (a.error || truncated.has("error")) sections.push(["Error", "error", a.error]);
    for (const [label, field, value] of sections) {
      const block = el("div");
      let text;
      if (truncated.has(field)) text = ui.unloadable.has(a.id) ? "Not shown: too large for the snapshot, and it could not be fetched." : "Loading…";
      else if (value === null || value === void 0) text = "—";
      else text = typeof value === "string" ? value : formatJson(value);
      block.append(el("h3", null, label), el("pre", "mono", text));
      blocks.append(block);
    }
    td.append(grid, blocks);
    row.detail.replaceChildren(td);
    row.detailOf = a;
    return row.detail;
  }
  function matches2(a) {
    const f = ui.filters;
    if (f.status && a.status !== f.status) return false;
    if (f.agentType && a.agentType !== f.agentType) return false;
    if (f.text) {
      const haystack = [a.agentName, a.agentType, a.message, a.error, a.sessionId, a.category, a.id].filter(Boolean).join("\n").toLowerCase();
      if (!haystack.includes(f.text)) return false;
    }
    return true;
  }
  function renderAgentTypes(all) {
    const select = $("filter-agent");
    const types = [...new Set(all.map((a) => a.agentType).filter(Boolean))].sort();
    if (ui.filters.agentType && !types.includes(ui.filters.agentType)) types.push(ui.filters.agentType);
    const current = [...select.options].slice(1).map((o) => o.value);
    if (current.length === types.length && current.every((t, i) => t === types[i])) return;
    const all_ = el("option", null, "All");
    all_.value = "";
    const options = [all_];
    for (const type of types) {
      const option = el("option", null, type);
      option.value = type;
      options.push(option);
    }
    select.replaceChildren(...options);
    select.value = ui.filters.agentType;
  }
  function render() {
    const state = ui.state;
    const all = activities();
    const counts = { running: 0, completed: 0, failed: 0 };
    for (const a of all) if (a.status in counts) counts[a.status] += 1;
    $("count-all").textContent = String(all.length);
    for (const status of Object.keys(counts)) $(`count-${status}`).textContent = String(counts[status]);
    for (const button of document.querySelectorAll(".stat")) {
      button.setAttribute("aria-pressed", String((button.dataset["status"] ?? "") === ui.filters.status));
    }
    renderAgentTypes(all);
    const organization = state?.organizationId;
    if (organization) {
      $("org").hidden = false;
      $("org-name").textContent = organization;
      $("org-name").title = organization;
    }
    const seq = state?.lastEventId ?? null;
    $("last-seq").textContent = seq === null ? "–" : `#${seq}`;
    document.documentElement.dataset["lastSeq"] = seq === null ? "" : String(seq);
    document.documentElement.dataset["snapshots"] = String(ui.feed?.store.snapshots ?? 0);
    const visible = all.filter(matches2);
    const shown = new Set(visible.map((a) => a.id));
    for (const [id, row] of ui.rows) {
      if (!shown.has(id)) {
        row.tr.remove();
        row.detail?.remove();
        ui.rows.delete(id);
      }
    }
    const known = new Set(all.map((a) => a.id));
    for (const id of ui.expanded) if (!known.has(id)) ui.expanded.delete(id);
    const tbody = $("rows");
    let index = 0;
    const place = (node) => {
      const at = tbody.children[index];
      if (at !== node) tbody.insertBefore(node, at ?? null);
      index += 1;
    };
    for (const a of visible) {
      let row = ui.rows.get(a.id);
      if (!row) {
        row = createRow(a.id);
        ui.rows.set(a.id, row);
      }
      if (row.shown !== a) fillRow(row, a);
      if (ui.fresh.has(a.id)) {
        const tr = row.tr;
        tr.classList.add("fresh");
        setTimeout(() => tr.classList.remove("fresh"), 1700);
      }
      place(row.tr);
      row.tr.setAttribute("aria-expanded", String(ui.expanded.has(a.id)));
      if (ui.expanded.has(a.id)) place(row.detailOf === a && row.detail ? row.detail : detailRow(row, a));
      else if (row.detail) {
        row.detail.remove();
        row.detail = null;
        row.detailOf = null;
      }
    }
    ui.fresh.clear();
    while (tbody.children.length > index) tbody.lastElementChild?.remove();
    const empty = $("empty");
    empty.hidden = visible.length > 0;
    empty.textContent = all.length ? "No activity matches the filters." : "No activities yet. They appear here as agents report them.";
    $("shown").textContent = visible.length === all.length ? `${all.length} activities` : `${visible.length} of ${all.length} activities`;
  }
  function tick() {
    for (const row of ui.rows.values()) {
      const a = row.shown;
      if (a && a.status === "running") row.elapsed.textContent = duration(a);
    }
  }
  function setFilter(name, value) {
    ui.filters[name] = value;
    if (name === "status") $("filter-status").value = value;
    scheduleRender();
  }
  function init() {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token2 = $("token-input").value.trim();
      if (token2) useToken(token2);
    });
    $("change-token").addEventListener("click", () => {
      stopFeed();
      storage.clear();
      setConnection("idle", "Not connected");
      showTokenForm("");
    });
    $("filter-status").addEventListener("change", (e) => setFilter("status", e.target.value));
    $("filter-agent").addEventListener("change", (e) => setFilter("agentType", e.target.value));
    $("filter-text").addEventListener("input", (e) => setFilter("text", e.target.value.trim().toLowerCase()));
    for (const button of document.querySelectorAll(".stat")) {
      button.addEventListener("click", () => setFilter("status", button.dataset["status"] || ""));
    }
    window.addEventListener("online", () => ui.feed?.retryNow());
    setInterval(tick, 1e3);
    const token = takeTokenFromUrl() || storage.get();
    render();
    if (token) useToken(token);
    else showTokenForm("");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
