/**
 * Typed helpers for the search API: `GET /api/activities` (keyset pages with `nextCursor`),
 * `GET /api/activities/{id}` and `GET /api/activities/{id}/events`. Same auth as the stream; a
 * 401 fetches a fresh token once (getToken) and tries again.
 */

import { ActivityStreamError, UnauthorizedError, responseError } from "./errors.js";
import type { Activity, ActivityStatus, AgentEvent } from "./events.js";
import { type GetToken, joinUrl } from "./stream.js";

export interface ActivityApiOptions {
  /** The server's base URL ("" or omitted: this page's origin). */
  readonly url?: string;
  readonly token?: string | null;
  readonly getToken?: GetToken;
  readonly fetch?: typeof fetch;
  readonly credentials?: RequestCredentials;
}

export interface SearchParams {
  readonly status?: ActivityStatus;
  readonly agentType?: string;
  readonly agentName?: string;
  readonly sessionId?: string;
  readonly category?: string;
  /** createdAt >= since */
  readonly since?: string | Date;
  /** createdAt < until */
  readonly until?: string | Date;
  /** Case-insensitive text in the agent name or the message. */
  readonly q?: string;
  /** 1 to 200 (default 50). */
  readonly limit?: number;
  /** The previous page's nextCursor. */
  readonly cursor?: string | null;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** Pass back as `cursor` for the next page; null on the last one. */
  readonly nextCursor: string | null;
}

export interface EventPageParams {
  /** 1 to 1000 (default 200). */
  readonly limit?: number;
  readonly cursor?: string | null;
}

type Query = Record<string, string | number | Date | null | undefined>;

function queryString(params: Query): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    search.set(key, value instanceof Date ? value.toISOString() : String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export class ActivityApi {
  private token: string | null;

  constructor(private readonly options: ActivityApiOptions = {}) {
    this.token = options.token ?? null;
  }

  /** One page of the organization's activities, newest first. */
  search(params: SearchParams = {}, init: { signal?: AbortSignal } = {}): Promise<Page<Activity>> {
    return this.json<Page<Activity>>(`/api/activities${queryString({ ...params })}`, init.signal);
  }

  /** Every matching activity, newest first, page after page (follows nextCursor). */
  async *searchAll(params: SearchParams = {}, init: { signal?: AbortSignal } = {}): AsyncGenerator<Activity> {
    let cursor = params.cursor ?? null;
    do {
      const page = await this.search({ ...params, cursor }, init);
      yield* page.items;
      cursor = page.nextCursor;
    } while (cursor);
  }

  /** One whole activity (never truncated); null when there is none in the token's organization. */
  async getActivity(id: string, init: { signal?: AbortSignal } = {}): Promise<Activity | null> {
    try {
      return await this.json<Activity>(`/api/activities/${encodeURIComponent(id)}`, init.signal);
    } catch (error) {
      if (error instanceof ActivityStreamError && error.status === 404) return null;
      throw error;
    }
  }

  /** A page of one activity's events, in seq order; null when there is no such activity. */
  async getActivityEvents(id: string, params: EventPageParams = {}, init: { signal?: AbortSignal } = {}): Promise<Page<AgentEvent> | null> {
    try {
      return await this.json<Page<AgentEvent>>(`/api/activities/${encodeURIComponent(id)}/events${queryString({ ...params })}`, init.signal);
    } catch (error) {
      if (error instanceof ActivityStreamError && error.status === 404) return null;
      throw error;
    }
  }

  private async json<T>(path: string, signal: AbortSignal | undefined): Promise<T> {
    const { getToken } = this.options;
    if (this.token === null && getToken) this.token = await this.freshToken(getToken, "initial");
    let response = await this.request(path, signal);
    if (response.status === 401 && getToken) {
      this.token = await this.freshToken(getToken, "unauthorized");
      response = await this.request(path, signal);
    }
    if (!response.ok) throw await responseError(response);
    return (await response.json()) as T;
  }

  private async freshToken(getToken: GetToken, reason: "initial" | "unauthorized"): Promise<string> {
    let token: string | null;
    try {
      token = await getToken({ reason });
    } catch (error) {
      if (error instanceof UnauthorizedError) throw new ActivityStreamError("unauthorized", error.message || "getToken refused", null, { cause: error });
      throw error;
    }
    if (!token) throw new ActivityStreamError("unauthorized", "getToken gave no token");
    return token;
  }

  private request(path: string, signal: AbortSignal | undefined): Promise<Response> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.token) headers["Authorization"] = `Bearer ${this.token}`;
    const init: RequestInit = { headers };
    if (signal) init.signal = signal;
    if (this.options.credentials) init.credentials = this.options.credentials;
    return (this.options.fetch ?? globalThis.fetch)(joinUrl(this.options.url, path), init);
  }
}

export function createActivityApi(options: ActivityApiOptions = {}): ActivityApi {
  return new ActivityApi(options);
}
