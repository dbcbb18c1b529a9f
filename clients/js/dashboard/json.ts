/**
 * JSON for people, with bounds: agents' payloads can be nested as deep as PostgreSQL accepts
 * (thousands of levels) or be megabytes long. The walk is iterative (no recursion, so no stack
 * overflow), indents only the first levels, and stops after `maxChars`.
 */

interface Frame {
  readonly array: readonly unknown[] | null;
  readonly keys: readonly string[];
  readonly object: Record<string, unknown> | null;
  index: number;
}

export function formatJson(value: unknown, maxChars = 200_000, maxIndent = 32): string {
  const out: string[] = [];
  let length = 0;
  const emit = (text: string) => {
    out.push(text);
    length += text.length;
  };
  const newline = (depth: number) => (depth <= maxIndent ? `\n${"  ".repeat(depth)}` : "");
  const stack: Frame[] = [];

  const open = (v: unknown): void => {
    if (v === null || typeof v !== "object") {
      const text = JSON.stringify(v);
      emit(text === undefined ? "null" : text);
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
    const object = v as Record<string, unknown>;
    const keys = Object.keys(object);
    if (keys.length === 0) emit("{}");
    else {
      emit("{");
      stack.push({ array: null, keys, object, index: 0 });
    }
  };

  open(value);
  while (stack.length > 0 && length < maxChars) {
    const top = stack[stack.length - 1]!;
    const size = top.array ? top.array.length : top.keys.length;
    if (top.index < size) {
      const depth = stack.length;
      if (top.index > 0) emit(",");
      emit(newline(depth));
      let child: unknown;
      if (top.array) child = top.array[top.index];
      else {
        const key = top.keys[top.index]!;
        emit(`${JSON.stringify(key)}: `);
        child = top.object![key];
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
  if (stack.length > 0 || text.length > maxChars) text = `${text.slice(0, maxChars)}\n… (cut: longer than ${maxChars} characters)`;
  return text;
}
