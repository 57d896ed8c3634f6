/**
 * Which `effect` the `digime-simulator` command would load, and whether this package supports it:
 * Effect 3 from 3.22.4 on, the `effect` range of `peerDependencies` in `package.json`.
 *
 * It imports nothing but Node's built-ins, so that it runs before anything of Effect is linked.
 * Effect 4 lacks modules this package imports (`effect/Either`, `effect/ParseResult`, …), and Node
 * links the whole static import graph before any code runs: without this check the command would
 * die with a bare `ERR_MODULE_NOT_FOUND` naming a file under `effect/dist/`. A program that imports
 * the package has no such first step: the README's Install section names that error as the sign of
 * Effect 4.
 */
import { existsSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** The versions of `effect` this package supports; equal to its `peerDependencies.effect` (a test checks it). */
export const supportedRange = "^3.22.4"

interface Version {
  readonly major: number
  readonly minor: number
  readonly patch: number
  readonly prerelease: boolean
}

/** A semantic version (`3.22.4`, `4.0.0-beta.1`, `3.22.4+build`), or `undefined` for anything else. */
const parseVersion = (version: string): Version | undefined => {
  const match = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/.exec(version)
  if (match === null) return undefined
  return {
    major: Number(match[1]),
    minor: Number(match[2]),
    patch: Number(match[3]),
    prerelease: match[4] !== undefined
  }
}

/** The lowest supported version: the one a caret range starts at. */
const floor = supportedRange.slice(1)
const lowest = parseVersion(floor)!

const needs = `@digime-effect/node needs Effect 3 (effect ${supportedRange}).`
const install = `Install effect@${floor} and the Effect 3 releases of the @effect packages, pinned as in the ` +
  `README's install command (npm's latest tags point at Effect 4).`

/**
 * Why the `effect` of version `version` cannot run this package, or `undefined` when it can: when it
 * satisfies `^3.22.4` (major 3, 3.22.4 or later, no prerelease). `undefined` stands for no `effect`
 * at all. `location` (where the package was found, or looked for) is named in the message.
 */
export const unsupportedEffect = (version: string | undefined, location?: string): string | undefined => {
  if (version === undefined) {
    const from = location === undefined ? "" : ` (looked for from ${location})`
    return `no \`effect\` package found${from}. ${needs} ${install}`
  }
  const at = location === undefined ? "" : ` at ${location}`
  if (version.trim() === "") return `found an \`effect\` package${at} with no version. ${needs} ${install}`
  const parsed = parseVersion(version)
  if (parsed === undefined) {
    return `found an \`effect\` package${at} whose version, "${version}", is not a version. ${needs} ${install}`
  }
  const found = `found effect ${version}${at}`
  if (parsed.major > 3) {
    const which = parsed.prerelease ? `a prerelease of Effect ${parsed.major}` : `Effect ${parsed.major}`
    return `${found}: that is ${which}, which is not supported yet. ${needs} ${install}`
  }
  if (parsed.major < 3) return `${found}: that is Effect ${parsed.major}. ${needs} ${install}`
  if (parsed.prerelease) {
    return `${found}: that is a prerelease, which ${supportedRange} does not include. ${needs} ${install}`
  }
  const older = parsed.minor < lowest.minor || (parsed.minor === lowest.minor && parsed.patch < lowest.patch)
  return older ? `${found}: that is older than ${floor}. ${needs} ${install}` : undefined
}

/** The `effect` package found from a module: its directory and its version (`""` when unreadable). */
export interface FoundEffect {
  readonly directory: string
  readonly version: string
}

const code = (error: unknown): unknown =>
  typeof error === "object" && error !== null && "code" in error ? error.code : undefined

/**
 * The `effect` package that a module at `from` (a `file:` URL, usually `import.meta.url`) would
 * import, found as Node finds it (`node_modules` folders up from the module), or `undefined` when
 * there is none. Effect 3 and 4 both export `./package.json`; for a release that does not, the
 * folders Node would look in are searched for the package's directory.
 */
export const findEffect = (from: string): FoundEffect | undefined => {
  const require = createRequire(from)
  let packageJson: string | undefined
  try {
    packageJson = require.resolve("effect/package.json")
  } catch (error) {
    if (code(error) !== "ERR_PACKAGE_PATH_NOT_EXPORTED") return undefined
    packageJson = (require.resolve.paths("effect") ?? []).map((folder) => join(folder, "effect", "package.json"))
      .find((path) => existsSync(path))
    if (packageJson === undefined) return undefined
  }
  let version = ""
  try {
    const manifest: unknown = JSON.parse(readFileSync(packageJson, "utf8"))
    const field = typeof manifest === "object" && manifest !== null && "version" in manifest
      ? manifest.version
      : undefined
    if (typeof field === "string") version = field
  } catch {
    // An unreadable package.json: no version.
  }
  return { directory: dirname(packageJson), version }
}

/**
 * The check the command runs first: why the `effect` that a module at `from` (its
 * `import.meta.url`) would load cannot run this package, or `undefined` when it can.
 */
export const checkEffect = (from: string): string | undefined => {
  const found = findEffect(from)
  if (found === undefined) return unsupportedEffect(undefined, dirname(fileURLToPath(from)))
  return unsupportedEffect(found.version, found.directory)
}
