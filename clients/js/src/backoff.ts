/** Reconnection delays: exponential, capped, with jitter so that the clients of a restarted
 * server do not all come back in the same instant. */

export interface BackoffOptions {
  /** The first delay's upper bound (ms); default 1000. */
  readonly initialMs?: number;
  /** The largest delay (ms); default 30000. */
  readonly maxMs?: number;
}

export const DEFAULT_BACKOFF = { initialMs: 1000, maxMs: 30_000 } as const;

/** The wait before retry number `attempt` (0 for the first): uniformly in [base/2, base],
 * base = min(maxMs, initialMs * 2^attempt). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialMs ?? DEFAULT_BACKOFF.initialMs;
  const max = options.maxMs ?? DEFAULT_BACKOFF.maxMs;
  const base = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(base / 2 + random() * (base / 2));
}
