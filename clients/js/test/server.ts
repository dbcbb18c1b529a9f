// The real `pgactivity serve`, started and restarted by the JS tests themselves.
//
// tests/e2e/test_js_client.py provides, through the environment, a fresh database with the
// schema (PGACTIVITY_TEST_DATABASE_URL), the command (PGACTIVITY_TEST_COMMAND, a JSON list),
// the JWT secret (PGACTIVITY_TEST_JWT_SECRET) and psql (PGACTIVITY_TEST_PSQL). Without them
// the server tests skip with that reason (`npm test` alone runs the unit tests).
import { type ChildProcess, spawn } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, closeSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const E2E = {
  databaseUrl: process.env["PGACTIVITY_TEST_DATABASE_URL"] ?? "",
  command: process.env["PGACTIVITY_TEST_COMMAND"] ? (JSON.parse(process.env["PGACTIVITY_TEST_COMMAND"]) as string[]) : [],
  secret: process.env["PGACTIVITY_TEST_JWT_SECRET"] ?? "",
  psql: process.env["PGACTIVITY_TEST_PSQL"] ?? "psql",
};

/** The reason the server tests cannot run here, or false. */
export const skipServer: string | false =
  E2E.databaseUrl && E2E.command.length && E2E.secret
    ? false
    : "needs a database and pgactivity: run them through pytest tests/e2e/test_js_client.py";

export function uniqueOrg(prefix = "org"): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

const b64url = (data: string | Buffer) => Buffer.from(data).toString("base64url");

/** An HS256 JWT for `org`, valid for `ttlSeconds` (negative: already expired). */
export function mintToken(org: string, ttlSeconds = 3600, secret = E2E.secret): string {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ org_id: org, iat: now, exp: now + ttlSeconds }));
  const signature = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${signature}`;
}

function run(command: string, args: string[], input: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} exited ${code}: ${err}`))));
    child.stdin.end(input);
  });
}

/** Runs SQL through plain psql, as a non-JavaScript writer would. */
export function psql(sql: string): Promise<string> {
  return run(E2E.psql, ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", E2E.databaseUrl], sql);
}

function serverEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PGACTIVITY_") && k !== "DATABASE_URL") env[k] = v;
  return {
    ...env,
    DATABASE_URL: E2E.databaseUrl,
    PGACTIVITY_JWT_SECRET: E2E.secret,
    PGACTIVITY_HEARTBEAT_SECONDS: "1",
    PGACTIVITY_LISTENER_PING_SECONDS: "1",
    PGACTIVITY_JWT_LEEWAY_SECONDS: "1", // the token-expiry test waits exp + leeway
    PYTHONUNBUFFERED: "1",
    ...extra,
  };
}

/** `pgactivity <args>` (e.g. purge) on the test database. */
export function cli(...args: string[]): Promise<string> {
  const [command, ...rest] = E2E.command;
  return run(command ?? "pgactivity", [...rest, ...args], "", serverEnv());
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

export class Server {
  private proc: ChildProcess | null = null;
  private readonly logPath: string;
  private constructor(
    readonly port: number,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.logPath = join(mkdtempSync(join(tmpdir(), "pgactivity-js-")), "server.log");
  }

  static async start(extraEnv: Record<string, string> = {}): Promise<Server> {
    const server = new Server(await freePort(), serverEnv(extraEnv));
    await server.start();
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const [command, ...args] = E2E.command;
    const log = openSync(this.logPath, "a");
    const proc = spawn(command ?? "pgactivity", [...args, "serve", "--port", String(this.port)], {
      env: this.env,
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    this.proc = proc;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`pgactivity serve exited with ${proc.exitCode}:\n${this.log()}`);
      try {
        const response = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(1000) });
        await response.body?.cancel();
        if (response.status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`pgactivity serve not ready after 30 s:\n${this.log()}`);
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  log(): string {
    try {
      return readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }
}

/** Resolves when `check()` holds, checked after every call of the returned `poke` and at
 * start; rejects with `what` after `timeoutMs`. Tests call poke from the stream's callbacks, so
 * they wait on events, not on time. */
export function condition(check: () => boolean, what: string, timeoutMs = 20_000): { done: Promise<void>; poke: () => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
  const poke = () => {
    let ok = false;
    try {
      ok = check();
    } catch (e) {
      clearTimeout(timer);
      reject(e as Error);
      return;
    }
    if (ok) {
      clearTimeout(timer);
      resolve();
    }
  };
  queueMicrotask(poke);
  return { done, poke };
}
