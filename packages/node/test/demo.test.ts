import { assert, describe, it } from "@effect/vitest"
import { execFile, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { availableParallelism, tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const packageDir = fileURLToPath(new URL("..", import.meta.url))

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const runDemo = (args: ReadonlyArray<string>, timeout = 60_000): Promise<Run> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "examples/demo.ts", ...args],
      { cwd: packageDir, timeout },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : (error.code as number | null), stdout, stderr })
    )
  })

// The demo is the project's main job: run it as a real process, with real time (short lifetimes):
// the token lifecycle, then the user's files and a push with a second contract of the same user.
describe("demo (real process)", () => {
  const checkTimeline = (out: string) => {
    for (
      const step of [
        "1. startAuthorization",
        "3. completeAuthorization",
        "5. read after expiry: refreshed first",
        "6. 50 concurrent reads on a stale token: 1 refresh",
        "7. read after the refresh token expired: RefreshTokenExpired",
        "8. nextStep: reauthorize",
        "9. reauthorized",
        "10. Files.readAll",
        "11. sync over: 3 file(s) read and decrypted",
        "steps.json: 27 bytes decrypted, gzip inside",
        "12. startAddingContract",
        "13. pushData with the write contract: digi.me holds 1 pushed file(s)",
        "14. read back with the read contract: push-",
        "{\"note\":\"pushed by the demo\"}"
      ]
    ) assert.include(out, step)
    assert.include(out, "replays=0")
    assert.include(out, "waiting for")
  }

  it("walks the whole lifecycle and exits 0; a second run finds the token the first one stored", async () => {
    const dir = mkdtempSync(Path.join(tmpdir(), "digime-demo-"))
    // A refresh token of 6 s: the files and the push after the reauthorization fit in its life.
    const args = ["--access-lifetime", "1", "--refresh-lifetime", "6", "--concurrency", "50"]
    const store = ["--store", Path.join(dir, "tokens.db")]
    try {
      const first = await runDemo([...args, ...store])
      assert.strictEqual(first.code, 0, first.stderr)
      assert.notInclude(first.stdout, "found the token an earlier run stored")
      checkTimeline(first.stdout)
      const second = await runDemo([...args, ...store])
      assert.strictEqual(second.code, 0, second.stderr)
      assert.include(second.stdout, "0. found the token an earlier run stored")
      // A new simulator does not know it: the typed error and the next step are shown.
      assert.include(second.stdout, "nextStep: authorize")
      checkTimeline(second.stdout)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 90_000)

  it("passes on a loaded machine: its rehearsal lengthens the lifetimes to fit", async () => {
    const dir = mkdtempSync(Path.join(tmpdir(), "digime-demo-load-"))
    // As many busy processes as the machine has cores, for as long as the demo runs.
    const burners = Array.from(
      { length: Math.max(2, availableParallelism()) },
      () => spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" })
    )
    try {
      // The README's defaults (3 s, 10 s, 200 concurrent reads), which failed on a busy machine.
      const run = await runDemo(["--store", Path.join(dir, "tokens.db")], 240_000)
      assert.strictEqual(run.code, 0, `${run.stdout}\n${run.stderr}`)
      assert.include(run.stdout, "rehearsal on this machine")
      assert.include(run.stdout, "6. 200 concurrent reads on a stale token: 1 refresh")
      checkTimeline(run.stdout.replace("6. 200 concurrent reads", "6. 50 concurrent reads"))
    } finally {
      for (const burner of burners) burner.kill("SIGKILL")
      rmSync(dir, { recursive: true, force: true })
    }
  }, 300_000)

  it("--help lists the options and exits 0; a bad option exits 2", async () => {
    const help = await runDemo(["--help"])
    assert.strictEqual(help.code, 0)
    for (const option of ["--access-lifetime", "--refresh-lifetime", "--concurrency", "--simulator-url", "--store"]) {
      assert.include(help.stdout, option)
    }
    const bad = await runDemo(["--concurrency", "zero"])
    assert.strictEqual(bad.code, 2)
    assert.include(bad.stderr, "--concurrency must be a positive integer")
  }, 60_000)
})
