// Runs the compiled tests (build/test/*.test.js) one file at a time where node supports it.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const dir = join("build", "test");
const files = readdirSync(dir).filter((f) => f.endsWith(".test.js")).sort().map((f) => join(dir, f));
const [major, minor] = process.versions.node.split(".").map(Number);
const serial = major > 20 || (major === 20 && minor >= 10) ? ["--test-concurrency=1"] : [];
const { status } = spawnSync(process.execPath, ["--test", ...serial, ...files], { stdio: "inherit" });
process.exit(status ?? 1);
