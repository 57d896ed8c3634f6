import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"

const packageDir = fileURLToPath(new URL("..", import.meta.url))

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const runDemo = (args: ReadonlyArray<string>): Promise<Run> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "examples/demo.ts", ...args],
      { cwd: packageDir, timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : (error.code as number | null), stdout, stderr })
    )
  })

// The demo is the project's main job: run it as a real process, with real time (short lifetimes).
describe("demo (real process)", () => {
  it("walks the whole lifecycle and exits 0", async () => {
    const run = await runDemo(["--access-lifetime", "1", "--refresh-lifetime", "4", "--concurrency", "50"])
    assert.strictEqual(run.code, 0, run.stderr)
    const out = run.stdout
    for (
      const step of [
        "1. startAuthorization",
        "3. completeAuthorization",
        "5. read after expiry: refreshed first",
        "6. 50 concurrent reads on a stale token: 1 refresh",
        "7. read after the refresh token expired: RefreshTokenExpired",
        "8. nextStep: reauthorize",
        "9. reauthorized"
      ]
    ) assert.include(out, step)
    assert.include(out, "replays=0")
    assert.include(out, "waiting for")
  }, 60_000)

  it("--help lists the options and exits 0; a bad option exits 2", async () => {
    const help = await runDemo(["--help"])
    assert.strictEqual(help.code, 0)
    for (const option of ["--access-lifetime", "--refresh-lifetime", "--concurrency"]) assert.include(help.stdout, option)
    const bad = await runDemo(["--concurrency", "zero"])
    assert.strictEqual(bad.code, 2)
    assert.include(bad.stderr, "--concurrency must be a positive integer")
  }, 60_000)
})
