/**
 * The body of `digime-simulator`: parses the options, serves the simulated digi.me over HTTP until
 * SIGINT or SIGTERM, and prints the URLs to point an application at. Run with `--help` for the
 * options.
 *
 * `bin/simulator.ts`, the entry, imports this module only once it has checked the installed
 * `effect` (`bin/effectVersion.ts`): everything of Effect is linked from here on. It imports the
 * package by its own name, so that the built file finds the built modules once installed
 * (`publishConfig.exports`), and `tsx bin/simulator.ts` the sources in this repository (`exports`).
 */
import * as NodeDigimeSimulator from "@digime-effect/node/testing/NodeDigimeSimulator"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Arr from "effect/Array"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { readFile } from "node:fs/promises"
import { parseArgs } from "node:util"

const usage = `Usage: digime-simulator [options]     (in the digime-effect repository: pnpm simulator)

Serves a simulated digi.me (API, key set, consent pages) over HTTP until interrupted.

Options:
  --port N                     port to listen on (default 0: an ephemeral port)
  --host HOST                  address to listen on (default 127.0.0.1)
  --application-id ID          the application id (default demo-app)
  --app-name NAME              the name shown on the consent page (default the application id)
  --contract ID=PUBLIC_PEM     a read contract and the file of its public key (PEM); repeatable.
                               More can be added later with POST {origin}/_simulator/contracts
  --write-contract ID=PUBLIC_PEM
                               a write contract (it pushes data, it cannot read); repeatable
  --access-lifetime SECONDS    access token lifetime (default 3600)
  --refresh-lifetime SECONDS   refresh token lifetime (default 30 days)
  --no-strict-rotation         accept a rotated refresh token again instead of revoking its family
  --latency MS                 wait this long before each answer
  --sync-polls N               running file-list answers before a sync completes (default 2)
  --fail-every N:STATUS        answer every Nth API request with STATUS (500-599)
  --drop-refresh-answers N     cut the connection after each of the next N successful refreshes
  --auto-consent               opening a consent page answers at once with the redirect to the
                               callback (code and state), as clicking Allow would: no page to read
  --log                        print one line per request: method, path, status, and for a refusal
                               its cause (digi.me's answer only says e.g. "Parameter validation errors")
  --help                       show this help
`

class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

const positiveInteger = (flag: string, value: string | undefined, allowZero = false) =>
  Effect.gen(function*() {
    if (value === undefined) return undefined
    const number = Number(value)
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(number) || (!allowZero && number === 0)) {
      return yield* new UsageError({ message: `${flag} needs a ${allowZero ? "non-negative" : "positive"} integer` })
    }
    return number
  })

const parse = Effect.gen(function*() {
  const { values } = yield* Effect.try({
    try: () =>
      parseArgs({
        args: process.argv.slice(2),
        strict: true,
        allowPositionals: false,
        options: {
          port: { type: "string" },
          host: { type: "string" },
          "application-id": { type: "string" },
          "app-name": { type: "string" },
          contract: { type: "string", multiple: true },
          "write-contract": { type: "string", multiple: true },
          "sync-polls": { type: "string" },
          "access-lifetime": { type: "string" },
          "refresh-lifetime": { type: "string" },
          "no-strict-rotation": { type: "boolean" },
          latency: { type: "string" },
          "fail-every": { type: "string" },
          "drop-refresh-answers": { type: "string" },
          "auto-consent": { type: "boolean" },
          log: { type: "boolean" },
          help: { type: "boolean", short: "h" }
        }
      }),
    catch: (error) => new UsageError({ message: error instanceof Error ? error.message : "unreadable arguments" })
  })
  if (values.help === true) return undefined

  const port = yield* positiveInteger("--port", values.port, true)
  if (port !== undefined && port > 65535) return yield* new UsageError({ message: "--port must be at most 65535" })
  const accessLifetime = yield* positiveInteger("--access-lifetime", values["access-lifetime"])
  const refreshLifetime = yield* positiveInteger("--refresh-lifetime", values["refresh-lifetime"])
  const latency = yield* positiveInteger("--latency", values.latency, true)
  const dropRefreshAnswers = yield* positiveInteger("--drop-refresh-answers", values["drop-refresh-answers"], true)
  const syncPolls = yield* positiveInteger("--sync-polls", values["sync-polls"], true)
  let failEvery: { readonly nth: number; readonly status: number } | undefined
  if (values["fail-every"] !== undefined) {
    const match = /^(\d+):(5\d\d)$/.exec(values["fail-every"])
    if (match === null || Number(match[1]) < 1) {
      return yield* new UsageError({ message: "--fail-every needs N:STATUS, e.g. 5:503 (N ≥ 1, STATUS 500-599)" })
    }
    failEvery = { nth: Number(match[1]), status: Number(match[2]) }
  }
  const applicationId = values["application-id"] ?? "demo-app"
  if (applicationId.trim() === "") return yield* new UsageError({ message: "--application-id must not be empty" })

  const contracts: Array<{ contractId: string; publicKeyPem: string; accessType: "r" | "w" }> = []
  const entries = [
    ...(values.contract ?? []).map((entry) => ({ entry, accessType: "r" as const, flag: "--contract" })),
    ...(values["write-contract"] ?? []).map((entry) => ({ entry, accessType: "w" as const, flag: "--write-contract" }))
  ]
  for (const { accessType, entry, flag } of entries) {
    const cut = entry.indexOf("=")
    if (cut <= 0 || cut === entry.length - 1) {
      return yield* new UsageError({ message: `${flag} needs ID=PATH_TO_PUBLIC_PEM, got "${entry}"` })
    }
    const contractId = entry.slice(0, cut)
    const path = entry.slice(cut + 1)
    const publicKeyPem = yield* Effect.tryPromise({
      try: () => readFile(path, "utf8"),
      catch: () => new UsageError({ message: `cannot read the public key of contract ${contractId} at ${path}` })
    })
    contracts.push({ contractId, publicKeyPem, accessType })
  }

  const options: NodeDigimeSimulator.Options = {
    applicationId,
    contracts,
    host: values.host,
    port,
    appName: values["app-name"],
    accessTokenLifetime: accessLifetime === undefined ? undefined : Duration.seconds(accessLifetime),
    refreshTokenLifetime: refreshLifetime === undefined ? undefined : Duration.seconds(refreshLifetime),
    strictRotation: values["no-strict-rotation"] === true ? false : undefined,
    latency: latency === undefined || latency === 0 ? undefined : Duration.millis(latency),
    failEvery,
    dropRefreshAnswers,
    syncPolls,
    autoConsent: values["auto-consent"] === true ? true : undefined,
    log: values.log === true ? true : undefined
  }
  return options
})

const serve = (options: NodeDigimeSimulator.Options) =>
  Effect.gen(function*() {
    const server = yield* NodeDigimeSimulator.make({ ...options, contracts: [] })
    // Registered one by one, so that an unreadable key is a message, not a crash.
    for (const contract of options.contracts ?? []) {
      yield* server.simulator.registerContract(contract.contractId, contract.publicKeyPem, {
        accessType: contract.accessType
      }).pipe(
        Effect.mapError((error) => new UsageError({ message: `--contract ${contract.contractId}: ${error.reason}` }))
      )
    }
    const contractIds = (options.contracts ?? []).map((contract) =>
      `${contract.contractId}${contract.accessType === "w" ? " (write)" : ""}`
    )
    yield* Console.log(
      [
        "Simulated digi.me is listening.",
        `  base URL      ${server.baseUrl}`,
        `  onboard URL   ${server.onboardUrl}`,
        `  JWKS URL      ${server.jwksUrl}`,
        `  stats         GET  ${server.controlUrl}stats`,
        `  requests      GET  ${server.controlUrl}requests`,
        `  contracts     POST ${server.controlUrl}contracts  {"contractId","publicKeyPem"}`,
        `  faults        POST ${server.controlUrl}faults     a DigimeSimulator.Fault as JSON`,
        `  files         POST ${server.controlUrl}files      {"digimeUserId","files":[{"name","content"}]}`,
        `  accounts      GET  ${server.controlUrl}accounts?digimeUserId=…  POST {"digimeUserId"}`,
        `  reauth        POST ${server.controlUrl}reauth     {"digimeUserId","accountId","required"?}`,
        `  pushed        GET  ${server.controlUrl}pushed`,
        `  application   ${options.applicationId}`,
        `  contract ids  ${contractIds.length === 0 ? "(none yet)" : contractIds.join(", ")}`,
        `  consent       ${
          options.autoConsent === true
            ? "automatic: a consent page redirects to the callback at once (--auto-consent)"
            : "a page with Allow and Deny (--auto-consent to skip it)"
        }`,
        `  log           ${options.log === true ? "one line per request, below (--log)" : "off (--log to turn on)"}`,
        "",
        "Point your application at it:",
        `  DIGIME_APPLICATION_ID=${options.applicationId}`,
        `  DIGIME_BASE_URL=${server.baseUrl}`,
        `  DIGIME_ONBOARD_URL=${server.onboardUrl}`,
        "Press Ctrl+C to stop."
      ].join("\n")
    )
    return yield* Effect.never
  }).pipe(Effect.scoped)

/** One line per log entry on stdout: the time, the level when it is not INFO, the message. */
const lineLogger = Logger.make(({ date, logLevel, message }) => {
  const level = logLevel === LogLevel.Info ? "" : ` ${logLevel.label}`
  globalThis.console.log(`${date.toISOString()}${level} ${Arr.ensure(message).map(String).join(" ")}`)
})

const main = Effect.gen(function*() {
  const options = yield* parse
  if (options === undefined) return yield* Console.log(usage)
  return yield* serve(options)
}).pipe(
  Effect.catchTag("UsageError", (error) =>
    Effect.zipRight(
      Console.error(`digime-simulator: ${error.message}\n\n${usage}`),
      Effect.sync(() => {
        process.exitCode = 2
      })
    )),
  Effect.catchTag("ServeError", (error) =>
    Effect.zipRight(
      Console.error(
        `digime-simulator: cannot listen (${error.cause instanceof Error ? error.cause.message : "unknown"})`
      ),
      Effect.sync(() => {
        process.exitCode = 1
      })
    ))
)

NodeRuntime.runMain(main.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, lineLogger))), {
  disablePrettyLogger: true
})
