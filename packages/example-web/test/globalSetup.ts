/**
 * Makes sure a Chromium is on the machine for the browser test. Browsers cannot be downloaded
 * here, so Playwright drives Debian's `chromium` package, installed with apt-get when missing
 * (as root). Where that is impossible, the browser test is skipped with the reason printed —
 * except under CI, where a missing browser fails the run.
 */
import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import type { TestProject } from "vitest/node"

declare module "vitest" {
  export interface ProvidedContext {
    chromium: string
    chromiumMissing: string
  }
}

const candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]

const find = (): string | undefined =>
  [process.env.CHROMIUM_PATH, ...candidates].find((path): path is string => path !== undefined && existsSync(path))

export default function setup(project: TestProject) {
  let path = find()
  let reason = ""
  if (path === undefined) {
    if (process.getuid?.() === 0) {
      try {
        process.stderr.write("example-web: installing Debian's chromium for the browser test\n")
        execFileSync("apt-get", ["update", "-qq"], { stdio: "ignore", timeout: 300_000 })
        execFileSync("apt-get", ["install", "-y", "-qq", "chromium"], {
          stdio: "ignore",
          timeout: 600_000,
          env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
        })
      } catch (error) {
        reason = `apt-get install chromium failed: ${String(error)}`
      }
      path = find()
    } else {
      reason = "no Chromium found and not root, so it cannot be installed with apt-get"
    }
  }
  if (path === undefined) {
    if (process.env.CI) throw new Error(`The browser test needs Chromium: ${reason}`)
    process.stderr.write(`example-web: the browser test will be skipped: ${reason}\n`)
  }
  project.provide("chromium", path ?? "")
  project.provide("chromiumMissing", path === undefined ? reason : "")
}
