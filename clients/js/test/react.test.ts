// useActivityStream renders live activities (happy-dom, React 19, the real server).
import "./dom.js";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createElement } from "react";
import { createRoot } from "react-dom/client";
import { useActivityStream } from "../src/react.js";
import { Server, mintToken, psql, skipServer, uniqueOrg } from "./server.js";

describe("useActivityStream", { skip: skipServer }, () => {
  let server: Server;
  before(async () => {
    server = await Server.start();
  });
  after(async () => {
    await server?.stop();
  });

  test("a component sees the snapshot, then live activities arrive", async () => {
    const org = uniqueOrg();
    await psql(`SELECT agent_activity_start(organization_id => '${org}', agent_type => 'executor', agent_name => 'seeded');`);
    let renders = 0;
    let refreshes = 0;
    const changed: (() => void)[] = [];
    function Activities() {
      renders++;
      const { activities, status, lastEventId } = useActivityStream({
        url: server.url,
        getToken: () => {
          refreshes++;
          return mintToken(org);
        },
        backoff: { initialMs: 50, maxMs: 200 },
      });
      return createElement(
        "section",
        { "data-status": status, "data-seq": String(lastEventId ?? "") },
        createElement("ul", null, ...activities.map((a) => createElement("li", { key: a.id }, `${a.agentName}: ${a.status} ${a.progress ?? ""}`))),
      );
    }
    const container = document.createElement("div");
    document.body.append(container);
    const root = createRoot(container as unknown as Element);
    // Wait on the DOM itself: a MutationObserver wakes the check after every React commit.
    const observer = new MutationObserver(() => changed.forEach((f) => f()));
    observer.observe(container as unknown as Node, { subtree: true, childList: true, attributes: true, characterData: true });
    const until = (check: () => boolean, what: string) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}: ${container.innerHTML}`)), 20_000);
        const f = () => {
          if (check()) {
            clearTimeout(timer);
            changed.splice(changed.indexOf(f), 1);
            resolve();
          }
        };
        changed.push(f);
        f();
      });
    try {
      root.render(createElement(Activities));
      const section = () => container.querySelector("section");
      await until(() => section()?.getAttribute("data-status") === "live" && container.querySelectorAll("li").length === 1, "the snapshot");
      assert.equal(container.querySelector("li")?.textContent, "seeded: running ");
      await psql(`
        SELECT agent_activity_start(organization_id => '${org}', agent_type => 'executor', agent_name => 'live-one');
        SELECT agent_activity_progress(id, progress => 40) FROM agent_activities WHERE organization_id = '${org}' AND agent_name = 'seeded';`);
      await until(() => section()?.getAttribute("data-seq") === "3", "two live events");
      assert.deepEqual([...container.querySelectorAll("li")].map((li) => li.textContent), ["live-one: running ", "seeded: running 40"]);
      await psql(`SELECT agent_activity_complete(id) FROM agent_activities WHERE organization_id = '${org}' AND agent_name = 'live-one';`);
      await until(() => container.querySelector("li")?.textContent === "live-one: completed ", "the completion");
      assert.equal(refreshes, 1);
      assert.ok(renders < 20, `${renders} renders`);
    } finally {
      observer.disconnect();
      root.unmount();
    }
  });
});
