// Bundles the dashboard (dashboard/*.ts on top of src/) into src/pgactivity/static/dashboard.js,
// which is committed: users who pip-install pgactivity need no build step.
//   node scripts/build-dashboard.mjs          write the bundle
//   node scripts/build-dashboard.mjs --check  fail if the committed bundle is not what the build makes
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outfile = join(root, "..", "..", "src", "pgactivity", "static", "dashboard.js");

const result = await build({
  entryPoints: [join(root, "dashboard", "dashboard.ts")],
  bundle: true,
  write: false,
  format: "iife",
  target: "es2020",
  platform: "browser",
  charset: "utf8",
  legalComments: "none",
  outfile,
  absWorkingDir: root, // the bundle names its modules relative to clients/js, wherever this runs from
  banner: {
    js: "// Generated from clients/js (npm run build): edit dashboard/*.ts and src/*.ts there, not this file.",
  },
  logLevel: "warning",
});
const code = result.outputFiles[0].text;
const where = relative(process.cwd(), outfile);

if (process.argv.includes("--check")) {
  let committed = "";
  try {
    committed = readFileSync(outfile, "utf8");
  } catch {
    // missing: differs
  }
  if (committed !== code) {
    console.error(`${where} is not what the build produces: run \`npm run build\` in clients/js and commit it`);
    process.exit(1);
  }
  console.log(`${where} is up to date`);
} else {
  writeFileSync(outfile, code);
  console.log(`wrote ${where} (${code.length} bytes)`);
}
