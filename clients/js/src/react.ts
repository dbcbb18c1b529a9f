/**
 * `@pgactivity/client/react`: useActivityStream, on React's useSyncExternalStore.
 *
 * The hook owns an ActivityFeed per (url, transport, filters, limit): the stream opens when the
 * component mounts and closes when it unmounts; a remount resumes from the last event id. The
 * latest `token`/`getToken` of each render is used for the next connection (no reconnection
 * when only they change).
 */

import { useMemo, useRef, useSyncExternalStore } from "react";
import { ActivityFeed, type ActivityFeedOptions, type ActivityFeedState } from "./feed.js";
import type { Activity } from "./events.js";

export type UseActivityStreamOptions = ActivityFeedOptions;

export interface UseActivityStreamResult extends ActivityFeedState {
  /** The whole activity (fetches fields a snapshot truncated). */
  readonly load: (id: string) => Promise<Activity | undefined>;
  readonly feed: ActivityFeed;
}

const SERVER_STATE: ActivityFeedState = Object.freeze({
  activities: Object.freeze([]) as readonly Activity[],
  status: "connecting",
  error: null,
  lastEventId: null,
  organizationId: null,
});

function feedKey(options: UseActivityStreamOptions): string {
  const transport = typeof options.transport === "function" ? "custom" : (options.transport ?? "fetch");
  const f = options.filters ?? {};
  return JSON.stringify([options.url ?? "", transport, f.sessionId ?? null, f.agentType ?? null, f.category ?? null, options.limit ?? null]);
}

export function useActivityStream(options: UseActivityStreamOptions): UseActivityStreamResult {
  const latest = useRef(options);
  latest.current = options;
  const key = feedKey(options);
  const feed = useMemo(
    () => {
      const current = latest.current;
      return new ActivityFeed({
        ...current,
        token: null,
        // Whatever the latest render passed: a fresh getToken, or the current token.
        getToken: (context) => {
          const now = latest.current;
          return now.getToken ? now.getToken(context) : (now.token ?? null);
        },
        onEvent: (event) => latest.current.onEvent?.(event),
      });
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps -- the key says what needs a new feed
    [key],
  );
  const state = useSyncExternalStore(feed.subscribe, feed.getState, () => SERVER_STATE);
  const load = useMemo(() => (id: string) => feed.load(id), [feed]);
  return useMemo(() => ({ ...state, load, feed }), [state, load, feed]);
}

export type { ActivityFeedState } from "./feed.js";
