"""`pgactivity demo`: simulated agents writing realistic activity through the SQL API.

Each simulated agent loops: start an activity, report a few progress steps,
then complete it or (now and then) fail it, pause, and start again. It writes
with `AsyncActivityTracker`, exactly like a real agent, so everything goes
through the database's rules and triggers. On stop, activities still running
are failed with "demo stopped" rather than left running forever.

`serve --demo` runs the same coroutine as a background task of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from pgactivity.errors import PgActivityError
from pgactivity.tracker import AsyncActivityTracker

logger = logging.getLogger(__name__)

DEFAULT_ORGANIZATIONS = ("demo", "acme", "globex")
STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Scenario:
    agent_type: str
    agent_names: tuple[str, ...]
    categories: tuple[str, ...]
    prompts: tuple[str, ...]
    steps: tuple[str, ...]
    errors: tuple[str, ...]


SCENARIOS = (
    Scenario(
        agent_type="planner",
        agent_names=("planner-main", "planner-fast"),
        categories=("ultrabrain", "planning"),
        prompts=(
            "Plan the migration of the billing service to PostgreSQL 18",
            "Break down 'SSO for enterprise customers' into tasks",
            "Plan the rollout of the new onboarding flow",
        ),
        steps=(
            "Reading the issue and linked discussions",
            "Mapping the affected modules",
            "Identifying risks and dependencies",
            "Drafting the task breakdown",
            "Estimating effort per task",
            "Writing the plan",
        ),
        errors=("context window exceeded while reading the discussion", "planner produced an invalid task graph"),
    ),
    Scenario(
        agent_type="executor",
        agent_names=("executor-high", "executor-low", "executor-ci"),
        categories=("ultrabrain", "quick", "visual"),
        prompts=(
            "Implement pagination for GET /api/users",
            "Fix the flaky test in test_checkout.py",
            "Add rate limiting to the public API",
            "Upgrade the frontend to React 19",
        ),
        steps=(
            "Cloning the repository",
            "Analyzing codebase...",
            "Editing src/api/users.ts",
            "Editing src/api/users.test.ts",
            "Running the unit tests",
            "Fixing 2 failing tests",
            "Running the linter",
            "Opening a pull request",
        ),
        errors=(
            "tests failed: 3 of 148 (test_checkout_total, test_refund, test_tax_rounding)",
            "timeout after 120s waiting for tool 'run_tests'",
            "permission denied: cannot push to protected branch 'main'",
        ),
    ),
    Scenario(
        agent_type="researcher",
        agent_names=("researcher-web", "researcher-docs"),
        categories=("research", "analysis"),
        prompts=(
            "Compare LISTEN/NOTIFY with logical replication for change streams",
            "Summarize the changes in the PostgreSQL 18 release notes",
            "Find prior art for exactly-once delivery over SSE",
        ),
        steps=(
            "Searching the documentation",
            "Reading 12 sources",
            "Extracting the relevant passages",
            "Comparing approaches",
            "Summarizing the findings",
        ),
        errors=("rate limited by the model provider (HTTP 429)", "search backend unavailable (HTTP 503)"),
    ),
)

FAILURE_RATE = 0.15


class _Agent:
    """One simulated agent: an endless series of activities for one organization."""

    def __init__(
        self,
        tracker: AsyncActivityTracker,
        organization_id: str,
        rng: random.Random,
        speed: float,
        stop: asyncio.Event,
    ) -> None:
        self.tracker = tracker
        self.organization_id = organization_id
        self.rng = rng
        self.speed = speed
        self.stop = stop
        self.current: str | None = None

    async def pause(self, low: float, high: float) -> bool:
        """Sleep a random while; True when the demo is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), self.rng.uniform(low, high) / self.speed)
        return self.stop.is_set()

    async def run(self) -> None:
        backoff = 1.0
        if await self.pause(0, 2):
            return
        while not self.stop.is_set():
            try:
                await self.one_activity()
                backoff = 1.0
            except (psycopg.OperationalError, PgActivityError) as exc:
                # The database went away or refused a write: keep the demo alive.
                logger.warning("demo agent: %s; retrying in %.0fs", exc, backoff)
                if await self.pause(backoff, backoff):
                    break
                backoff = min(backoff * 2, 30.0)
                await self.abandon("demo agent lost its database connection")
                continue
            if await self.pause(0.5, 3):
                break
        await self.abandon("demo stopped")

    async def abandon(self, error: str) -> None:
        """Fail the activity in progress, if any (best effort: it may be finished already)."""
        activity_id, self.current = self.current, None
        if activity_id is not None:
            with contextlib.suppress(psycopg.OperationalError, PgActivityError):
                await self.tracker.track_fail(activity_id, error=error)

    async def one_activity(self) -> None:
        rng = self.rng
        scenario = rng.choice(SCENARIOS)
        self.current = await self.tracker.track_start(
            organization_id=self.organization_id,
            agent_type=scenario.agent_type,
            agent_name=rng.choice(scenario.agent_names),
            session_id=f"ses-{rng.getrandbits(32):08x}",
            category=rng.choice(scenario.categories),
            input_data={"prompt": rng.choice(scenario.prompts)},
            metadata={"source": rng.choice(("slack", "github", "cli", "api")), "simulated": True},
        )
        steps = scenario.steps[: rng.randint(3, len(scenario.steps))]
        fail_at = rng.randrange(len(steps)) if rng.random() < FAILURE_RATE else None
        progress = 0
        for index, step in enumerate(steps):
            if await self.pause(0.6, 2.4):
                return  # run() fails the activity on the way out
            if index == fail_at:
                await self.tracker.track_fail(self.current, error=rng.choice(scenario.errors))
                self.current = None
                return
            progress = min(95, max(progress + 1, round(100 * (index + 1) / (len(steps) + 1) + rng.randint(-4, 4))))
            await self.tracker.track_progress(self.current, message=step, progress=progress)
        if await self.pause(0.4, 1.2):
            return
        await self.tracker.track_complete(self.current, output_data=_output(scenario.agent_type, rng))
        self.current = None


def _output(agent_type: str, rng: random.Random) -> dict[str, object]:
    if agent_type == "executor":
        files = rng.sample(["src/api/users.ts", "src/api/users.test.ts", "src/db/schema.sql", "README.md"], 2)
        return {"filesChanged": files, "pullRequest": f"#{rng.randint(100, 999)}", "testsPassed": True}
    if agent_type == "planner":
        return {"tasks": rng.randint(4, 12), "estimateDays": rng.randint(2, 15)}
    return {"sources": rng.randint(5, 20), "summary": "Findings summarized in the attached report."}


async def run_demo(
    database_url: str,
    *,
    organizations: Sequence[str] = DEFAULT_ORGANIZATIONS,
    agents_per_organization: int = 3,
    speed: float = 1.0,
    duration: float | None = None,
    seed: int | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the simulated agents until `duration` elapses, `stop` is set, or the task is cancelled."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    stop = stop or asyncio.Event()
    master = random.Random(seed)
    async with AsyncActivityTracker(database_url, max_size=2) as tracker:
        agents = [
            _Agent(tracker, org, random.Random(master.getrandbits(64)), speed, stop)
            for org in organizations
            for _ in range(agents_per_organization)
        ]
        tasks = [asyncio.create_task(agent.run(), name=f"pgactivity-demo-{i}") for i, agent in enumerate(agents)]
        logger.info(
            "demo started",
            extra={"organizations": list(organizations), "agents": len(agents), "speed": speed},
        )
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
        finally:
            # Stop cooperatively, so that no write is cut in half and running activities get failed.
            stop.set()
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    logger.warning("demo agent ended with %r", result)
            logger.info("demo stopped")
