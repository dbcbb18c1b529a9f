/**
 * Transports: how one connection of the stream is made. A transport opens one HTTP response,
 * hands each message's text to the stream, and reports once how it ended. It never reconnects
 * by itself: the stream (stream.ts) decides when and with which token and last event id.
 *
 * - `fetch`: a `fetch` reader with our WHATWG parser (sse.ts). Sends `Authorization: Bearer` and
 *   `Last-Event-ID` headers, so the token stays out of URLs; works in browsers and Node >= 18;
 *   sees heartbeats, so a silent dead connection is noticed.
 * - `eventsource`: the browser's native EventSource. It cannot send headers: the token goes in
 *   `?access_token=` (use short-lived tokens) or comes from the `pgactivity_token` cookie, and
 *   the last event id in `?lastEventId=`. Its own reconnection is never used (each error
 *   closes it), and when it gives up on an HTTP error a probe request finds the status.
 */

import { ActivityStreamError, responseError } from "./errors.js";
import { SseParser } from "./sse.js";

export interface TransportRequest {
  /** The stream URL with its filters (no token, no last event id). */
  readonly url: string;
  readonly token: string | null;
  readonly lastEventId: number | null;
}

export type TransportEnd =
  | { readonly kind: "ended" } // the server ended the response (or an open stream dropped)
  | { readonly kind: "failed"; readonly error: ActivityStreamError };

export interface TransportHandlers {
  onOpen(): void;
  onMessage(data: string): void;
  /** Called once; never after close(). */
  onEnd(end: TransportEnd): void;
}

export interface TransportConnection {
  close(): void;
}

export type Transport = (request: TransportRequest, handlers: TransportHandlers) => TransportConnection;

export interface FetchTransportOptions {
  readonly fetch?: typeof fetch;
  /** fetch's credentials mode (send the cookie cross-origin with "include"). */
  readonly credentials?: RequestCredentials;
  /** End the connection when nothing, not even a heartbeat, arrived for this long (ms); 0: never.
   * Default 75000: 2.5 times the server's default heartbeat (30 s). */
  readonly idleTimeoutMs?: number;
}

function withQuery(url: string, params: Record<string, string>): string {
  const query = new URLSearchParams(params).toString();
  if (!query) return url;
  return url + (url.includes("?") ? "&" : "?") + query;
}

export function fetchTransport(options: FetchTransportOptions = {}): Transport {
  const idleTimeoutMs = options.idleTimeoutMs ?? 75_000;
  return (request, handlers) => {
    const controller = new AbortController();
    let closed = false;
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    const end = (value: TransportEnd) => {
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
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      if (request.token) headers["Authorization"] = `Bearer ${request.token}`;
      if (request.lastEventId !== null) headers["Last-Event-ID"] = String(request.lastEventId);
      const doFetch = options.fetch ?? globalThis.fetch;
      const init: RequestInit = { headers, signal: controller.signal };
      if (options.credentials) init.credentials = options.credentials;
      alive();
      const response = await doFetch(request.url, init);
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
        },
      });
      const reader = response.body.getReader();
      try {
        for (;;) {
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
    run().catch((error: unknown) => {
      if (closed) return;
      end({ kind: "failed", error: new ActivityStreamError("network", errorMessage(error), null, { cause: error }) });
    });
    return {
      close() {
        if (closed) return;
        closed = true;
        clearTimeout(idleTimer);
        controller.abort();
      },
    };
  };
}

export interface EventSourceTransportOptions {
  readonly EventSource?: typeof EventSource;
  /** Send the cookie to another origin (EventSource's withCredentials). */
  readonly withCredentials?: boolean;
  /** Used by the probe that finds why the EventSource gave up. */
  readonly fetch?: typeof fetch;
}

export function eventSourceTransport(options: EventSourceTransportOptions = {}): Transport {
  return (request, handlers) => {
    const Source = options.EventSource ?? globalThis.EventSource;
    if (typeof Source !== "function") throw new Error("no EventSource here: use the fetch transport");
    const params: Record<string, string> = {};
    if (request.token) params["access_token"] = request.token;
    if (request.lastEventId !== null) params["lastEventId"] = String(request.lastEventId);
    const url = withQuery(request.url, params);
    const source = new Source(url, { withCredentials: options.withCredentials ?? false });
    let closed = false;
    let opened = false;
    const probe = new AbortController();
    const end = (value: TransportEnd) => {
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
    source.onmessage = (message: MessageEvent<string>) => {
      if (!closed) handlers.onMessage(message.data);
    };
    source.onerror = () => {
      if (closed) return;
      const gaveUp = source.readyState === Source.CLOSED;
      source.close(); // never its own reconnection: the stream chooses token, id and delay
      if (!gaveUp) {
        end(opened ? { kind: "ended" } : { kind: "failed", error: new ActivityStreamError("network", "cannot connect") });
        return;
      }
      // An HTTP error status or a wrong content type; EventSource does not say which: ask.
      const doFetch = options.fetch ?? globalThis.fetch;
      const init: RequestInit = { signal: probe.signal, credentials: options.withCredentials ? "include" : "same-origin" };
      doFetch(url, init)
        .then(async (response) => {
          const error = response.ok
            ? new ActivityStreamError("protocol", "the stream failed")
            : await responseError(response);
          probe.abort();
          end({ kind: "failed", error });
        })
        .catch((error: unknown) => {
          end({ kind: "failed", error: new ActivityStreamError("network", errorMessage(error), null, { cause: error }) });
        });
    };
    return {
      close() {
        if (closed) return;
        closed = true;
        probe.abort();
        source.close();
      },
    };
  };
}

function errorMessage(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
  }
  return String(error);
}
