/**
 * The check `digime-simulator` runs before anything of Effect is linked: which versions of `effect`
 * it accepts (those of the package's peer range), what it says of the others, and, as a real
 * process, that it speaks before Node would fail linking the command under Effect 4.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { checkEffect, findEffect, supportedRange, unsupportedEffect } from "../bin/effectVersion.js"

const packageDir = join(import.meta.dirname, "..")

describe("effectVersion: the versions of effect the simulator command accepts", () => {
  it("Effect 3 from 3.22.4 on is accepted", () => {
    for (const version of ["3.22.4", "3.22.10", "3.30.0", "3.22.4+build.1"]) {
      assert.isUndefined(unsupportedEffect(version, "/app/node_modules/effect"), version)
    }
  })

  it("older Effect 3, Effect 2, Effect 4 and its prereleases, a prerelease of 3, garbage: refused, each saying why", () => {
    const refused = (version: string, ...says: ReadonlyArray<string>) => {
      const message = unsupportedEffect(version, "/app/node_modules/effect")
      assert.isString(message, version)
      for (const text of [version, "/app/node_modules/effect", "Effect 3 (effect ^3.22.4)", "effect@3.22.4", ...says]) {
        assert.include(message, text)
      }
    }
    refused("3.21.9", "older than 3.22.4")
    refused("3.22.3", "older than 3.22.4")
    refused("2.4.19", "that is Effect 2")
    refused("4.0.0-beta.1", "a prerelease of Effect 4, which is not supported yet")
    refused("4.1.0", "that is Effect 4, which is not supported yet")
    refused("3.23.0-beta.0", "a prerelease")
    refused("banana", "is not a version")
    refused("^3.22.4", "is not a version")
    refused("3.22", "is not a version")
  })

  it("no effect at all has its own message", () => {
    const message = unsupportedEffect(undefined, "/app/bin")
    assert.isString(message)
    assert.include(message, "no `effect` package found (looked for from /app/bin)")
    assert.include(message, "Effect 3 (effect ^3.22.4)")
    assert.include(message, "effect@3.22.4")
    assert.include(unsupportedEffect("", "/app/node_modules/effect"), "with no version")
  })

  it("the range is the package's peer range of effect", () => {
    const manifest = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"))
    assert.strictEqual(supportedRange, manifest.peerDependencies.effect)
  })

  it("the READMEs the message points to pin effect@3.22.4; the Install section tells the sign of Effect 4", () => {
    const readme = readFileSync(join(packageDir, "../../README.md"), "utf8")
    const install = readme.slice(
      readme.indexOf("\n## Install\n"),
      readme.indexOf("\n## ", readme.indexOf("\n## Install\n") + 1)
    )
    assert.include(install, "npm install @digime-effect/core @digime-effect/node effect@3.22.4 ")
    assert.include(install, "`ERR_MODULE_NOT_FOUND`")
    assert.include(install, "`digime-simulator`")
    assert.include(readFileSync(join(packageDir, "README.md"), "utf8"), " effect@3.22.4 ")
  })

  it("in this repository, the bin finds the installed Effect 3 and accepts it", () => {
    const from = pathToFileURL(join(packageDir, "bin/simulator.ts")).href
    const found = findEffect(from)
    assert.isDefined(found)
    assert.match(found!.version, /^3\./)
    assert.isUndefined(checkEffect(from))
  })
})

/** Runs `<dir>/bin/simulator.ts` (with tsx, as `pnpm simulator` does) to its end. */
const run = (dir: string) =>
  new Promise<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>((resolve) => {
    const { NODE_PATH: _, ...env } = process.env
    const child = spawn(process.execPath, ["--import", "tsx", join(dir, "bin/simulator.ts")], {
      cwd: packageDir,
      env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  })

/**
 * A temp dir holding the entry and the check, and nothing else of the command: `simulatorMain.js`
 * does not exist there, so that only a check run before linking anything of it can speak.
 */
const withBin = async (effectManifest: object | undefined, body: (dir: string) => Promise<void>) => {
  const dir = mkdtempSync(join(tmpdir(), "effect-version-"))
  try {
    mkdirSync(join(dir, "bin"))
    // As in the published package: ES modules.
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "bin-under-test", type: "module" }))
    for (const file of ["simulator.ts", "effectVersion.ts"]) {
      copyFileSync(join(packageDir, "bin", file), join(dir, "bin", file))
    }
    if (effectManifest !== undefined) {
      mkdirSync(join(dir, "node_modules/effect"), { recursive: true })
      writeFileSync(join(dir, "node_modules/effect/package.json"), JSON.stringify(effectManifest))
    }
    await body(dir)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe("effectVersion: the simulator command as a process", () => {
  it("under Effect 4: the message on stderr and exit code 1, before anything of the command is linked", () =>
    withBin({
      name: "effect",
      version: "4.1.0",
      type: "module",
      exports: { "./package.json": "./package.json" }
    }, async (dir) => {
      const { code, stderr, stdout } = await run(dir)
      assert.strictEqual(code, 1, stderr)
      assert.strictEqual(stdout, "")
      assert.match(stderr, /^digime-simulator: found effect 4\.1\.0 at /)
      assert.include(stderr, join(dir, "node_modules/effect"))
      assert.include(stderr, "Effect 3")
      assert.include(stderr, "effect@3.22.4")
      assert.notInclude(stderr, "ERR_MODULE_NOT_FOUND")
      // A message, no stack.
      assert.notMatch(stderr, /\n\s+at /)
      assert.strictEqual(stderr.trim().split("\n").length, 1)
    }), 30_000)

  it("with no effect at all: its own message and exit code 1", () =>
    withBin(undefined, async (dir) => {
      const { code, stderr } = await run(dir)
      assert.strictEqual(code, 1, stderr)
      assert.match(stderr, /^digime-simulator: no `effect` package found \(looked for from /)
      assert.include(stderr, join(dir, "bin"))
      assert.include(stderr, "effect@3.22.4")
      assert.notInclude(stderr, "ERR_MODULE_NOT_FOUND")
    }), 30_000)
})
