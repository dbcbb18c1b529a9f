// The SSE parser against the WHATWG rules, on byte streams split at every position.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SseParser } from "../src/sse.js";

interface Parsed {
  messages: { event: string; data: string; lastEventId: string }[];
  comments: string[];
  retries: number[];
  lastEventId: string;
}

function parse(chunks: Uint8Array[]): Parsed {
  const out: Parsed = { messages: [], comments: [], retries: [], lastEventId: "" };
  const parser = new SseParser({
    onMessage: (m) => out.messages.push({ event: m.event, data: m.data, lastEventId: m.lastEventId }),
    onComment: (c) => out.comments.push(c),
    onRetry: (r) => out.retries.push(r),
  });
  for (const chunk of chunks) parser.push(chunk);
  parser.end();
  out.lastEventId = parser.lastEventId;
  return out;
}

const encode = (text: string) => new TextEncoder().encode(text);

/** Parses `text` whole, split in two at every byte, split in three at every pair of bytes (short
 * streams), and one byte at a time: every way must give `expected`. */
function conforms(text: string, expected: Partial<Parsed>): void {
  const bytes = encode(text);
  const check = (chunks: Uint8Array[], how: string) => {
    const got = parse(chunks);
    for (const key of Object.keys(expected) as (keyof Parsed)[]) {
      assert.deepEqual(got[key], expected[key], `${key} differs when split ${how} in ${JSON.stringify(text)}`);
    }
  };
  check([bytes], "nowhere");
  for (let i = 0; i <= bytes.length; i++) check([bytes.subarray(0, i), bytes.subarray(i)], `at ${i}`);
  if (bytes.length <= 200) {
    for (let i = 0; i <= bytes.length; i++) {
      for (let j = i; j <= bytes.length; j++) {
        check([bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)], `at ${i} and ${j}`);
      }
    }
  }
  check(Array.from(bytes, (b) => Uint8Array.of(b)), "at every byte");
}

const msg = (data: string, lastEventId = "", event = "message") => ({ event, data, lastEventId });

test("a pgactivity stream: retry, snapshot, heartbeat, events, end without an id", () => {
  const text =
    "retry: 2000\n\n" +
    'id: 41\ndata: {"type": "snapshot", "seq": 41, "activities": []}\n\n' +
    ": heartbeat\n\n" +
    'id: 42\ndata: {"type": "agent_started", "seq": 42, "agentName": "é✓😀"}\n\n' +
    'data: {"type": "end", "reason": "token_expired"}\n\n';
  conforms(text, {
    messages: [
      msg('{"type": "snapshot", "seq": 41, "activities": []}', "41"),
      msg('{"type": "agent_started", "seq": 42, "agentName": "é✓😀"}', "42"),
      msg('{"type": "end", "reason": "token_expired"}', "42"),
    ],
    comments: [" heartbeat"],
    retries: [2000],
    lastEventId: "42",
  });
});

test("CRLF, LF and CR line ends, mixed", () => {
  conforms("data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r", {
    messages: [msg("a\nb\nc"), msg("d")],
  });
  conforms("id: 1\r\ndata: x\r\n\r\nid: 2\rdata: y\r\rid: 3\ndata: z\n\n", {
    messages: [msg("x", "1"), msg("y", "2"), msg("z", "3")],
  });
});

test("comments are not events", () => {
  conforms(": heartbeat\n\n:\n\n: a\ndata: x\n: b\n\n", {
    messages: [msg("x")],
    comments: [" heartbeat", "", " a", " b"],
  });
});

test("multi-line data, one leading space removed, fields without a colon", () => {
  conforms("data: one\ndata:two\ndata:  three\ndata\ndata:\n\n", {
    messages: [msg("one\ntwo\n three\n\n")],
  });
  conforms("data\n\n", { messages: [msg("")] });
  conforms("data:\n\n", { messages: [msg("")] });
});

test("id persists across events, an empty id resets it, an id with NUL is ignored", () => {
  conforms("id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 8\u0000\ndata: d\n\n", {
    messages: [msg("a", "7"), msg("b", "7"), msg("c", ""), msg("d", "")],
    lastEventId: "",
  });
  // An id alone (no data) dispatches nothing but still sets the last event id.
  conforms("id: 9\n\n", { messages: [], lastEventId: "9" });
  conforms("id: 5\ndata: a\n\nid: 6\n", { messages: [msg("a", "5")], lastEventId: "5" });
});

test("retry takes ASCII digits only", () => {
  conforms("retry: 1500\nretry: 15x0\nretry:  100\nretry: -1\nretry\nretry:\nretry:0\n\n", {
    retries: [1500, 0],
    messages: [],
  });
});

test("a leading BOM is dropped, once", () => {
  conforms("\uFEFFdata: x\n\n", { messages: [msg("x")] });
  conforms("\uFEFF\uFEFFdata: x\n\n", { messages: [] }); // the second is part of a field name
  conforms("data: \uFEFFx\n\n", { messages: [msg("\uFEFFx")] });
});

test("event types, unknown fields, blank lines without data", () => {
  conforms("event: add\ndata: 1\n\ndata: 2\n\nevent: x\n\ndata: 3\n\nfoo: bar\nfoo\ndata: 4\n\n\n\n", {
    messages: [msg("1", "", "add"), msg("2"), msg("3"), msg("4")],
  });
});

test("an event not ended by a blank line is dropped at the end of the stream", () => {
  conforms("data: a\n\ndata: b\n", { messages: [msg("a")] });
  conforms("data: a\n\ndata: b", { messages: [msg("a")] });
  conforms("data: a\r", { messages: [] });
});

test("code points split between chunks, and a long line", () => {
  const long = "x".repeat(70_000) + "😀";
  const bytes = encode(`data: ${long}\n\n`);
  for (const size of [1, 3, 7, 4096]) {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
    assert.deepEqual(parse(chunks).messages, [msg(long)]);
  }
  conforms("data: 日本語 ✓ 😀 é\n\n", { messages: [msg("日本語 ✓ 😀 é")] });
});
