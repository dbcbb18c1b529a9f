/** @pgactivity/client: pgactivity's live activity stream, its state, and its search API. */

export { ActivityApi, createActivityApi } from "./api.js";
export type { ActivityApiOptions, EventPageParams, Page, SearchParams } from "./api.js";
export { backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { ActivityStreamError, UnauthorizedError } from "./errors.js";
export type { ErrorCode } from "./errors.js";
export { parseStreamEvent, TRUNCATABLE_FIELDS } from "./events.js";
export type {
  Activity,
  ActivityEvent,
  ActivityStatus,
  AgentCompletedEvent,
  AgentEvent,
  AgentFailedEvent,
  AgentProgressEvent,
  AgentStartedEvent,
  EndEvent,
  EndReason,
  Json,
  SnapshotEvent,
  StreamEvent,
  TruncatableField,
} from "./events.js";
export { ActivityFeed, createActivityFeed } from "./feed.js";
export type { ActivityFeedOptions, ActivityFeedState } from "./feed.js";
export { SseParser } from "./sse.js";
export type { SseHandlers, SseMessage } from "./sse.js";
export { ActivityStore, newestFirst } from "./store.js";
export type { ActivityStoreOptions } from "./store.js";
export { ActivityStream, connectActivityStream } from "./stream.js";
export type {
  ActivityStreamOptions,
  EventListener,
  GetToken,
  StatusListener,
  StreamFilters,
  StreamStatus,
  TokenReason,
} from "./stream.js";
export { eventSourceTransport, fetchTransport } from "./transports.js";
export type {
  EventSourceTransportOptions,
  FetchTransportOptions,
  Transport,
  TransportEnd,
  TransportHandlers,
  TransportRequest,
} from "./transports.js";
