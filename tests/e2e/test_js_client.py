"""The JavaScript client (clients/js) built and tested from the Python suite.

`npm ci` (when node_modules is missing or older than the lock file), then the package's own
tests (`npm test`: the parser on every split of its input, the store, the stream's rules, and the
client against a real `pgactivity serve` that the JS tests start and restart themselves on the
database given here, one of them with a small snapshot budget so that activities come
truncated), then a check that the committed dashboard bundle is what the build makes, and the
package as a user gets it: `npm pack`, installed into an empty project, imported, and the
README's React example type-checked against its .d.ts files.
Skipped only where Node.js is missing (CI installs it: .ci/system-packages nodejs npm).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import SECRET, pgactivity_command
from tests.helpers import psql_binary

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "clients" / "js"
NODE = shutil.which("node")
NPM = shutil.which("npm")

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None, reason="Node.js and npm are not installed (apt-get install nodejs npm)"
)


def npm(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = JS
) -> subprocess.CompletedProcess[str]:
    assert NPM is not None
    return subprocess.run(
        [NPM, *args],
        cwd=cwd,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def node_modules() -> None:
    installed = JS / "node_modules" / ".package-lock.json"
    lock = JS / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        proc = npm("ci", "--no-audit", "--no-fund")
        assert proc.returncode == 0, f"npm ci failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.slow
def test_js_client_tests_pass_against_the_real_server(node_modules: None, db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGACTIVITY_")}
    env |= {
        "PGACTIVITY_TEST_DATABASE_URL": db_url,
        "PGACTIVITY_TEST_COMMAND": json.dumps(pgactivity_command()),
        "PGACTIVITY_TEST_JWT_SECRET": SECRET,
        "PGACTIVITY_TEST_PSQL": psql_binary(),
    }
    proc = npm("test", env=env)
    output = proc.stdout + proc.stderr
    counts = {k: int(v) for k, v in re.findall(r"^# (pass|fail|skipped|cancelled) (\d+)$", output, re.M)}
    report = _failures(output) + f"\ncounts: {counts}"
    assert proc.returncode == 0, report
    assert counts.get("fail") == 0, report
    assert counts.get("skipped") == 0, report  # the server tests ran, not skipped
    assert counts.get("pass", 0) >= 25, report  # a run that ran nothing fails
    print(f"JS tests: {counts}")


def _failures(output: str) -> str:
    """The TAP blocks of failed tests (and the compiler's errors), not 30 pages of passes."""
    blocks = re.findall(r"^ *not ok .*?(?=^ *(?:ok|not ok) |\Z)", output, re.M | re.S)
    return "\n".join(blocks)[-20000:] if blocks else output[-20000:]


def test_committed_dashboard_bundle_is_what_the_build_produces(node_modules: None) -> None:
    proc = npm("run", "--silent", "check:dashboard", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def readme_react_example() -> str:
    """The tsx block of the README's "Web client" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Web client\n") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"^```tsx\n(.*?)^```", section, re.M | re.S)
    assert len(blocks) == 1, blocks
    return str(blocks[0])


# The shipped .d.ts files are checked too (no skipLibCheck), under the strictest flags a user may set.
CONSUMER_TSCONFIGS = {
    "bundler": {"module": "esnext", "moduleResolution": "bundler", "exactOptionalPropertyTypes": True},
    "nodenext": {"module": "nodenext", "moduleResolution": "nodenext"},
}
SMOKE = """
import { ActivityStore, connectActivityStream, createActivityApi, parseStreamEvent } from "@pgactivity/client";
import { useActivityStream } from "@pgactivity/client/react";
const store = new ActivityStore();
store.apply(parseStreamEvent(JSON.stringify({ type: "snapshot", seq: 1, organizationId: "o", reset: false,
  activities: [{ id: "a", status: "running", truncated: ["inputData"] }] })));
console.log(JSON.stringify([typeof connectActivityStream, typeof createActivityApi, typeof useActivityStream,
  store.lastEventId, store.get("a").truncated]));
"""


@pytest.mark.slow
def test_npm_pack_installs_and_the_readme_react_example_type_checks(node_modules: None, tmp_path: Path) -> None:
    proc = npm("pack", "--json", "--pack-destination", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    packed = json.loads(proc.stdout[proc.stdout.index("[") :])[0]
    files = {f["path"] for f in packed["files"]}
    for name in ("index", "react", "stream", "store", "api", "events"):
        assert {f"dist/{name}.js", f"dist/{name}.d.ts"} <= files, files
    assert all(f.startswith("dist/") or f in {"LICENSE", "package.json"} for f in files), files
    modules = {f.removesuffix(".js") for f in files if f.endswith(".js")}
    assert modules == {f.removesuffix(".d.ts") for f in files if f.endswith(".d.ts")}  # every module typed

    # An empty project installs the tarball (no registry: the package has no dependencies).
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "consumer", "private": True, "type": "module"}))
    proc = npm("install", "--offline", "--no-audit", "--no-fund", str(tmp_path / packed["filename"]), cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = project / "node_modules" / "@pgactivity" / "client"
    assert (installed / "dist" / "react.d.ts").exists()
    # React is the project's own (an optional peer dependency): here the one clients/js tests with.
    for package in ("react", "@types/react"):
        (project / "node_modules" / package).parent.mkdir(parents=True, exist_ok=True)
        (project / "node_modules" / package).symlink_to(JS / "node_modules" / package)

    assert NODE is not None
    proc = subprocess.run(
        [NODE, "--input-type=module", "-e", SMOKE], cwd=project, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["function", "function", "function", 1, ["inputData"]]

    (project / "example.tsx").write_text(readme_react_example())
    for name, options in CONSUMER_TSCONFIGS.items():
        config = project / f"tsconfig.{name}.json"
        compiler = {"strict": True, "noEmit": True, "jsx": "react-jsx", "target": "es2020", "lib": ["es2022", "dom"]}
        compiler |= {"types": [], "noUncheckedIndexedAccess": True, **options}
        config.write_text(json.dumps({"compilerOptions": compiler, "files": ["example.tsx"]}))
        tsc = [NODE, str(JS / "node_modules" / "typescript" / "bin" / "tsc"), "-p", str(config), "--listFiles"]
        proc = subprocess.run(tsc, cwd=project, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, f"the README example does not type-check ({name}):\n{proc.stdout}{proc.stderr}"
        # Its types came from the installed tarball, not from the sources.
        assert str(installed.resolve() / "dist" / "react.d.ts") in proc.stdout, proc.stdout
