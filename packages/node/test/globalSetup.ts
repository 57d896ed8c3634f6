/**
 * Starts a throwaway PostgreSQL for the tests of this package and provides its URL as `pgUrl`.
 * Reuses `DATABASE_URL` when it is set. The server runs as the `postgres` user when the tests run
 * as root (initdb refuses root), on a free port, without fsync; teardown stops it and removes its
 * directory. If no PostgreSQL is installed, it is installed with apt-get.
 */
import { execFileSync } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import type { TestProject } from "vitest/node"

declare module "vitest" {
  export interface ProvidedContext {
    pgUrl: string
  }
}

const binDir = (): string | undefined => {
  const root = "/usr/lib/postgresql"
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root)
    .filter((name) => existsSync(Path.join(root, name, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a))
  return versions.length === 0 ? undefined : Path.join(root, versions[0]!, "bin")
}

const install = (): string => {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  execFileSync("apt-get", ["update", "-qq"], { stdio: "ignore", env })
  execFileSync("apt-get", ["install", "-y", "-qq", "postgresql"], { stdio: "ignore", env })
  const bin = binDir()
  if (bin === undefined) throw new Error("PostgreSQL is not installed and apt-get could not install it")
  return bin
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

export default async function setup(project: TestProject): Promise<(() => void) | undefined> {
  const existing = process.env.DATABASE_URL
  if (existing !== undefined && existing !== "") {
    project.provide("pgUrl", existing)
    return undefined
  }
  const bin = binDir() ?? install()
  const isRoot = process.getuid?.() === 0
  const dir = mkdtempSync(Path.join(tmpdir(), "digime-pgtest-"))
  if (isRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim())
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim())
    chownSync(dir, uid, gid)
  }
  const run = (command: string, args: ReadonlyArray<string>) =>
    execFileSync(
      isRoot ? "runuser" : Path.join(bin, command),
      isRoot ? ["-u", "postgres", "--", Path.join(bin, command), ...args] : [...args],
      { stdio: "ignore" }
    )
  const data = Path.join(dir, "data")
  const port = await freePort()
  const stop = () => {
    try {
      run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"])
    } catch {
      // Not running (start failed): nothing to stop.
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    run("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
    run("pg_ctl", [
      "-D",
      data,
      "-l",
      Path.join(dir, "server.log"),
      "-w",
      "-t",
      "30",
      "-o",
      `-h 127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`,
      "start"
    ])
  } catch (error) {
    stop()
    throw error
  }
  project.provide("pgUrl", `postgres://postgres@127.0.0.1:${port}/postgres`)
  return stop
}
