// A DOM for the hook test (happy-dom), installed before React is imported.
import { Window } from "happy-dom";

const window = new Window({ url: "http://localhost/" });
const g = globalThis as Record<string, unknown>;
for (const name of ["window", "document", "navigator", "HTMLElement", "Node", "MutationObserver"] as const) {
  if (!(name in g) || name === "window" || name === "document") {
    Object.defineProperty(g, name, { value: name === "window" ? window : (window as unknown as Record<string, unknown>)[name], configurable: true, writable: true });
  }
}
export const dom = window;
