/**
 * A Server-Sent Events parser that follows the WHATWG rules ("Interpreting an event stream",
 * HTML § 9.2.6), fed with bytes in chunks split anywhere.
 *
 * - The stream is UTF-8; one leading BOM is dropped; a code point split between chunks is kept
 *   whole (TextDecoder in streaming mode).
 * - Lines end with CRLF, LF or CR; a CR at the end of one chunk and an LF at the start of the
 *   next are one line end.
 * - `:` starts a comment (reported to `onComment`, so a heartbeat proves the connection alive);
 *   `field: value` loses one space after the colon; a line without a colon is a field with an
 *   empty value.
 * - `data` lines are joined with LF; `id` sets the last event id (kept across events, ignored if
 *   it contains NUL); `retry` takes ASCII digits only; `event` sets the type (default `message`);
 *   other fields are ignored.
 * - A blank line dispatches the event, unless its data is empty. An event not ended by a blank
 *   line when the stream ends is dropped.
 *
 * It knows nothing of pgactivity's JSON: the stream (stream.ts) does that.
 */

export interface SseMessage {
  /** The `event:` field, `message` when absent. */
  readonly event: string;
  /** The `data:` lines joined with LF. */
  readonly data: string;
  /** The last event id at dispatch (the last `id:` seen so far, in this or an earlier event). */
  readonly lastEventId: string;
}

export interface SseHandlers {
  onMessage(message: SseMessage): void;
  onComment?(text: string): void;
  onRetry?(milliseconds: number): void;
}

const LF = 0x0a;
const CR = 0x0d;

export class SseParser {
  private readonly decoder = new TextDecoder("utf-8", { ignoreBOM: false });
  private buffer = ""; // decoded text not yet split into lines
  private afterCr = false; // the last chunk ended with CR: an LF first in the next one is part of it
  private data: string[] = [];
  private eventType = "";
  private lastEventIdBuffer = "";
  private lastEventIdString = "";

  constructor(private readonly handlers: SseHandlers) {}

  /** The event source's last event id: set at each blank line from the last `id:` field seen
   * (it persists across events), what a reconnect sends as Last-Event-ID. */
  get lastEventId(): string {
    return this.lastEventIdString;
  }

  /** Feeds the next chunk of the body. */
  push(chunk: Uint8Array): void {
    this.feedText(this.decoder.decode(chunk, { stream: true }));
  }

  /** The body ended: flushes the decoder; an event without its blank line is dropped (WHATWG). */
  end(): void {
    this.feedText(this.decoder.decode());
    this.buffer = "";
    this.afterCr = false;
    this.data = [];
    this.eventType = "";
  }

  private feedText(text: string): void {
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

  private line(line: string): void {
    if (line === "") {
      this.dispatch();
      return;
    }
    const colon = line.indexOf(":");
    if (colon === 0) {
      this.handlers.onComment?.(line.slice(1));
      return;
    }
    let field: string;
    let value: string;
    if (colon < 0) {
      field = line;
      value = "";
    } else {
      field = line.slice(0, colon);
      value = line.charCodeAt(colon + 1) === 0x20 ? line.slice(colon + 2) : line.slice(colon + 1);
    }
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\u0000")) this.lastEventIdBuffer = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.handlers.onRetry?.(Number.parseInt(value, 10));
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  private dispatch(): void {
    const data = this.data;
    const type = this.eventType;
    this.data = [];
    this.eventType = "";
    this.lastEventIdString = this.lastEventIdBuffer;
    if (data.length === 0) return;
    this.handlers.onMessage({ event: type || "message", data: data.join("\n"), lastEventId: this.lastEventIdString });
  }
}
