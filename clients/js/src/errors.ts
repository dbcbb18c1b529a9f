/** Errors the client reports. `code` is the server's stable error code where there is one. */

export type ErrorCode =
  | "unauthorized" // 401, or getToken gave no token
  | "bad_request" // 400: a filter or parameter the server refused
  | "forbidden" // 403
  | "not_found" // 404
  | "http_error" // any other status
  | "network" // the connection failed or dropped
  | "protocol"; // not an event stream

export class ActivityStreamError extends Error {
  override readonly name = "ActivityStreamError";
  constructor(
    readonly code: ErrorCode | (string & {}),
    message: string,
    /** The HTTP status, when there was a response. */
    readonly status: number | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Throw this from getToken when the user may no longer read the stream: the stream stops
 * instead of retrying (returning null or "" does the same). */
export class UnauthorizedError extends Error {
  override readonly name = "UnauthorizedError";
}

const CODES: Record<number, ErrorCode> = { 400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found" };

/** The error for a non-2xx response, from its JSON body `{"error": {"code", "message"}}` when it has one. */
export async function responseError(response: Response): Promise<ActivityStreamError> {
  let code: string = CODES[response.status] ?? "http_error";
  let message = `HTTP ${response.status}`;
  try {
    const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } } | null;
    if (body && typeof body.error === "object" && body.error !== null) {
      if (typeof body.error.code === "string") code = body.error.code;
      if (typeof body.error.message === "string") message = body.error.message;
    }
  } catch {
    // not JSON: keep the status
  }
  return new ActivityStreamError(code, message, response.status);
}
