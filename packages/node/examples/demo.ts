/**
 * The whole token lifecycle against a simulated digi.me over real HTTP (started here, or one you
 * started with `pnpm simulator`), with short lifetimes: authorize → consent → exchange → read →
 * access token expires → auto refresh → a burst of concurrent reads on a stale token → one refresh
 * → refresh token expires → RefreshTokenExpired → reauthorize → read again; then the user's files,
 * read and decrypted while the sync runs, and a push with a second (write) contract of the same
 * user, read back with the first.
 *
 *   pnpm demo [--access-lifetime 3] [--refresh-lifetime 10] [--concurrency 200] [--simulator-url URL]
 *
 * The lifetimes are minimums: the demo first times its own steps on this machine (a rehearsal on
 * a simulator of its own) and lengthens them when the machine is slow, so that each step happens
 * when the timeline says, however loaded the machine.
 */
import {
  Authorization,
  AutoRefresh,
  DigimeClient,
  Files,
  PendingAuthorizations,
  TokenKey,
  TokenManager,
  TokenStore
} from "@digime-effect/core"
import type { DigimeSimulator } from "@digime-effect/core/testing"
import { TestContract } from "@digime-effect/core/testing"
import { NodeDigime, SqlPendingAuthorizations, SqlTokenStore } from "@digime-effect/node"
import { NodeDigimeSimulator } from "@digime-effect/node/testing"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Console, DateTime, Duration, Effect, Layer, Option, Stream } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"

const usage = `Usage: pnpm demo [options]

Walks the whole digi.me token lifecycle against a simulated digi.me over HTTP and prints a timeline.

Options:
  --access-lifetime SECONDS   access token lifetime, at least (default 3)
  --refresh-lifetime SECONDS  refresh token lifetime, counted from the authorization, at least (default 10);
                              both are lengthened when a rehearsal of the steps shows a slow machine
  --concurrency N             concurrent reads in the burst on a stale token (default 200)
  --simulator-url URL         use a simulator already running (pnpm simulator) instead of starting one;
                              its own lifetimes apply, and its application id must be demo-app
  --store FILE                the embedded token store, a SQLite file (default .demo-data/tokens.db at
                              the repository root); a second run finds the token the first one stored
  -h, --help                  show this help`

const fail = (message: string): never => {
  process.stderr.write(`${message}\n\n${usage}\n`)
  process.exit(2)
}

const parsed = (() => {
  try {
    const argv = process.argv.slice(2)
    return parseArgs({
      // `pnpm demo -- --flag` passes the separator on: drop it.
      args: argv[0] === "--" ? argv.slice(1) : argv,
      options: {
        "access-lifetime": { type: "string", default: "3" },
        "refresh-lifetime": { type: "string", default: "10" },
        concurrency: { type: "string", default: "200" },
        "simulator-url": { type: "string" },
        store: { type: "string" },
        help: { type: "boolean", short: "h", default: false }
      }
    }).values
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error))
  }
})()

if (parsed.help) {
  process.stdout.write(`${usage}\n`)
  process.exit(0)
}

const positive = (name: string, value: string | undefined): number => {
  const n = Number(value)
  return Number.isInteger(n) && n > 0 ? n : fail(`--${name} must be a positive integer`)
}

const accessLifetime = positive("access-lifetime", parsed["access-lifetime"])
const refreshLifetime = positive("refresh-lifetime", parsed["refresh-lifetime"])
const concurrency = positive("concurrency", parsed.concurrency)
if (refreshLifetime <= accessLifetime) fail("--refresh-lifetime must be longer than --access-lifetime")
const simulatorOrigin = (() => {
  const url = parsed["simulator-url"]
  if (url === undefined) return undefined
  try {
    return new URL(url).origin
  } catch {
    return fail("--simulator-url must be an absolute URL")
  }
})()

const storeFile = Path.resolve(
  parsed.store ?? fileURLToPath(new URL("../../../.demo-data/tokens.db", import.meta.url))
)

const applicationId = "demo-app"
const contractId = "demo-contract"
const writeContractId = "demo-write-contract"
const callbackUrl = "https://app.example/digime/callback"
const key = TokenKey.make("alice", contractId)
const writeKey = TokenKey.make("alice", writeContractId)

// What the user's library holds in this demo: as a service would sync it, one file compressed.
const libraryFiles = [
  { name: "posts.json", content: JSON.stringify([{ id: 1, text: "hello from a simulated social network" }]) },
  { name: "steps.json", content: JSON.stringify({ steps: [4210, 8733, 10512] }), compression: "gzip" },
  { name: "profile.json", content: JSON.stringify({ name: "Alice" }) }
]

const started = Date.now()
const log = (what: string) => Console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${what}`)

/**
 * What the demo needs of the simulator: its URLs, a user who clicks Allow, its counters, files for a
 * user's library and what was pushed.
 */
interface Simulated {
  readonly baseUrl: string
  readonly onboardUrl: string
  readonly consent: (onboardingUrl: string) => Effect.Effect<string, unknown>
  readonly stats: Effect.Effect<DigimeSimulator.Stats, unknown>
  readonly addFiles: (digimeUserId: string, files: typeof libraryFiles) => Effect.Effect<void, unknown>
  readonly pushedCount: Effect.Effect<number, unknown>
}

/** Talks to a simulator through HTTP only, as a browser and an operator would. */
const overHttp = (origin: string) =>
  Effect.gen(function*() {
    const http = yield* HttpClient.HttpClient
    const consent = (onboardingUrl: string) =>
      Effect.gen(function*() {
        // The consent page, then a click on Allow: the answer is the redirect to the callback.
        const page = yield* http.get(onboardingUrl)
        if (page.status !== 200) return yield* Effect.fail(new Error(`consent page answered ${page.status}`))
        const answer = yield* http.execute(
          HttpClientRequest.post(`${origin}/apps/saas/consent`).pipe(
            HttpClientRequest.bodyUrlParams({ url: onboardingUrl, choice: "allow" })
          )
        )
        const location = answer.headers.location
        if (answer.status !== 303 || location === undefined) {
          return yield* Effect.fail(new Error(`consent answered ${answer.status}`))
        }
        return location
      })
    const stats = Effect.flatMap(http.get(`${origin}/_simulator/stats`), (response) => response.json).pipe(
      Effect.map((json) => json as DigimeSimulator.Stats)
    )
    const addFiles = (digimeUserId: string, files: typeof libraryFiles) =>
      Effect.flatMap(
        http.execute(
          HttpClientRequest.post(`${origin}/_simulator/files`).pipe(
            HttpClientRequest.bodyUnsafeJson({ digimeUserId, files })
          )
        ),
        (answer) => answer.status === 204 ? Effect.void : Effect.fail(new Error(`files answered ${answer.status}`))
      )
    const pushedCount = Effect.flatMap(http.get(`${origin}/_simulator/pushed`), (response) => response.json).pipe(
      Effect.map((json) => (json as { readonly library: ReadonlyArray<unknown> }).library.length)
    )
    return {
      baseUrl: `${origin}/v1.7/`,
      onboardUrl: `${origin}/apps/saas/`,
      consent,
      stats,
      addFiles,
      pushedCount
    } satisfies Simulated
  })

const program = (simulator: Simulated) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    const store = yield* TokenStore.TokenStore
    const read = AutoRefresh.withAutoRefresh(key, client.readAccounts)

    const counts = Effect.map(simulator.stats, (s) =>
      `requests ${
        Object.entries(s.requests).filter(([, n]) => n > 0).map(([name, n]) =>
          `${name}=${n}`
        ).join(" ")
      }; ` +
      `refreshes=${s.refreshes} replays=${s.replays}`)

    const waitUntil = (label: string, at: DateTime.Utc) =>
      Effect.gen(function*() {
        for (;;) {
          const left = DateTime.distance(yield* DateTime.now, at)
          if (left <= 0) break
          yield* log(`  waiting for ${label}: ${(left / 1000).toFixed(1)} s left`)
          yield* Effect.sleep(Duration.millis(Math.min(left + 50, 1000)))
        }
      })

    const token = Effect.map(store.get(key), Option.getOrThrow)

    // 0. A token kept by an earlier run
    const kept = yield* store.get(key)
    if (Option.isSome(kept)) {
      yield* log(`0. found the token an earlier run stored in ${storeFile} (version ${kept.value.version})`)
      const outcome = yield* Effect.either(read)
      if (outcome._tag === "Right") {
        yield* log(`   it still works: read ${outcome.right.length} account(s)`)
      } else {
        const error = outcome.left
        yield* log(`   this simulated digi.me does not know it: ${error._tag} (${error.message})`)
        if (
          error._tag !== "RefreshTokenExpired" && error._tag !== "ReauthRequired" && error._tag !== "InvalidAccessToken"
        ) {
          return yield* Effect.dieMessage(`unexpected ${error._tag}`)
        }
        const step = yield* AutoRefresh.nextStep(error, { callbackUrl })
        yield* log(`   nextStep: ${step.kind}; the timeline below starts with exactly that`)
      }
    }

    // 1. Authorization
    const start = yield* Authorization.startAuthorization({ key, callbackUrl })
    yield* log(`1. startAuthorization: send the user to ${start.url.split("?")[0]}?code=…`)
    const callback = yield* simulator.consent(start.url)
    yield* log("2. the user clicks Allow on the consent page; digi.me redirects to the callback with a code")
    yield* Authorization.completeAuthorization(callback)
    const first = yield* token
    yield* log(
      `3. completeAuthorization: code exchanged and stored (version ${first.version}); ` +
        `access token expires at ${DateTime.formatIso(first.token.accessToken.expiresAt)}`
    )

    // 2. Reads with a valid token
    const accounts = yield* read
    yield* log(`4. read accounts: ${accounts.length} account(s), no refresh — ${yield* counts}`)

    // 3. The access token expires: auto refresh
    yield* waitUntil("the access token to expire", first.token.accessToken.expiresAt)
    yield* read
    const second = yield* token
    yield* log(
      `5. read after expiry: refreshed first, stored as version ${second.version}, then read — ${yield* counts}`
    )

    // 4. A burst on a stale token
    yield* waitUntil("the access token to expire again", second.token.accessToken.expiresAt)
    const before = (yield* simulator.stats).refreshes
    const burst = yield* Effect.all(Array.from({ length: concurrency }, () => read), { concurrency: "unbounded" })
    const after = (yield* simulator.stats).refreshes
    yield* log(`6. ${burst.length} concurrent reads on a stale token: ${after - before} refresh — ${yield* counts}`)

    // 5. The refresh token expires
    const third = yield* token
    yield* waitUntil("the refresh token to expire", third.token.refreshToken.expiresAt)
    const outcome = yield* Effect.either(read)
    if (outcome._tag === "Right") return yield* Effect.dieMessage("expected RefreshTokenExpired")
    const error = outcome.left
    yield* log(`7. read after the refresh token expired: ${error._tag} (${error.message})`)
    if (
      error._tag !== "RefreshTokenExpired" && error._tag !== "ReauthRequired" && error._tag !== "InvalidAccessToken"
    ) {
      return yield* Effect.dieMessage(`unexpected ${error._tag}`)
    }

    // 6. Reauthorize
    const step = yield* AutoRefresh.nextStep(error, { callbackUrl })
    yield* log(`8. nextStep: ${step.kind} — send the user to ${step.url.split("?")[0]}?code=…`)
    yield* Authorization.completeAuthorization(yield* simulator.consent(step.url))
    const again = yield* read
    yield* log(
      `9. reauthorized, stored (version ${(yield* token).version}), read ${again.length} account(s) — ${yield* counts}`
    )

    // 7. The user's files, read while the sync runs
    const digimeUserId = (yield* token).token.digimeUserId
    if (digimeUserId === undefined) return yield* Effect.dieMessage("the token names no digi.me user")
    yield* simulator.addFiles(digimeUserId, libraryFiles)
    yield* log(`10. Files.readAll: a read session, its file list polled while the sync runs`)
    let filesRead = 0
    yield* Files.readAll(key, { pollInterval: "200 millis", timeout: "1 minute" }).pipe(
      Stream.runForEach((event) => {
        switch (event._tag) {
          case "Progress":
            return log(`    sync ${event.state}: ${event.filesListed} file(s) listed`)
          case "File": {
            filesRead++
            const text = new TextDecoder().decode(event.data)
            const compressed = event.compression === undefined ? "" : `, ${event.compression} inside`
            return log(
              `    ${event.file.name}: ${event.data.length} bytes decrypted${compressed}: ${text.slice(0, 50)}`
            )
          }
          case "FileFailed":
            return log(`    ${event.file.name} could not be read: ${event.error._tag}`)
        }
      })
    )
    yield* log(`11. sync over: ${filesRead} file(s) read and decrypted — ${yield* counts}`)

    // 8. A second contract of the same user pushes; the first reads it back
    const adding = yield* Authorization.startAddingContract({ key: writeKey, existing: key, callbackUrl })
    yield* Authorization.completeAuthorization(yield* simulator.consent(adding.url), { expectedKey: writeKey })
    yield* log("12. startAddingContract: the write contract consented, for the same digi.me library")
    const [account] = yield* read
    if (account === undefined) return yield* Effect.dieMessage("the user has no account")
    yield* AutoRefresh.withAutoRefresh(writeKey, (credentials) =>
      client.pushData({
        ...credentials,
        fileDescriptor: { mimeType: "application/json", accounts: [{ accountId: account.id }] },
        data: new TextEncoder().encode(JSON.stringify({ note: "pushed by the demo" }))
      }))
    yield* log(`13. pushData with the write contract: digi.me holds ${yield* simulator.pushedCount} pushed file(s)`)
    const readBack = yield* Files.readAll(key, { sessionOptions: { sourceFetch: false } }).pipe(
      Stream.filter((event): event is Files.FileRead => event._tag === "File"),
      Stream.filter((event) => "mimetype" in event.metadata),
      Stream.runCollect
    )
    for (const file of readBack) {
      yield* log(`14. read back with the read contract: ${file.file.name}: ${new TextDecoder().decode(file.data)}`)
    }
    yield* log("done: every token decision above was made by withAutoRefresh")
  })

// The library on the simulated digi.me at `baseUrl`, storing in `stores`.
const libraryOn = (
  simulator: { readonly baseUrl: string; readonly onboardUrl: string },
  contracts: ReadonlyArray<TestContract.TestContract>,
  stores: Layer.Layer<TokenStore.TokenStore | PendingAuthorizations.PendingAuthorizations, unknown>
) =>
  NodeDigime.layer({
    applicationId,
    contracts: contracts.map((each) => each.contract),
    baseUrl: simulator.baseUrl,
    onboardUrl: simulator.onboardUrl,
    refreshLeadTime: Duration.millis(500),
    refreshWaitMargin: Duration.millis(500)
  }).pipe(Layer.provideMerge(stores))

/**
 * Times the steps whose length the lifetimes must cover, on a simulator of its own with long
 * lifetimes: an authorization and a read, a refresh, and the burst of concurrent reads on a stale
 * token. Slowest of two rounds (the first also warms the code up), in milliseconds.
 */
const rehearse = (contract: TestContract.TestContract) =>
  Effect.gen(function*() {
    const server = yield* NodeDigimeSimulator.make({
      applicationId,
      contracts: [{ contractId, publicKeyPem: contract.publicKeyPem }]
    })
    const simulator = yield* overHttp(server.origin)
    const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.map(Effect.timed(effect), ([duration]) => Duration.toMillis(duration))
    return yield* Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const manager = yield* TokenManager.TokenManager
      const slowest = { authorize: 0, refresh: 0, burst: 0 }
      for (let round = 0; round < 2; round++) {
        const user = TokenKey.make(`rehearsal-${round}`, contractId)
        const read = AutoRefresh.withAutoRefresh(user, client.readAccounts)
        const authorize = yield* timed(Effect.gen(function*() {
          const start = yield* Authorization.startAuthorization({ key: user, callbackUrl })
          yield* Authorization.completeAuthorization(yield* simulator.consent(start.url))
          yield* read
        }))
        const refresh = yield* timed(Effect.zipRight(manager.refresh(user), read))
        const burst = yield* timed(Effect.zipRight(
          manager.refresh(user),
          Effect.all(Array.from({ length: concurrency }, () => read), { concurrency: "unbounded" })
        ))
        slowest.authorize = Math.max(slowest.authorize, authorize)
        slowest.refresh = Math.max(slowest.refresh, refresh)
        slowest.burst = Math.max(slowest.burst, burst)
      }
      return slowest
    }).pipe(
      Effect.provide(
        libraryOn(server, [contract], Layer.merge(TokenStore.layerMemory, PendingAuthorizations.layerMemory))
      )
    )
  }).pipe(Effect.scoped)

/**
 * The lifetimes the timeline needs, from the steps' measured lengths (three times each, for the
 * machine getting slower meanwhile), never under the ones asked for: the access token must
 * outlive an authorization and a read, and the burst; the refresh token, counted from the
 * authorization, must outlive that, two access tokens, a refresh and the burst.
 */
const lifetimesFor = (measured: { readonly authorize: number; readonly refresh: number; readonly burst: number }) => {
  const slack = 3
  // It must also outlive the burst: a token that expires while the burst runs is refreshed again.
  const access = Math.max(accessLifetime, Math.ceil((slack * Math.max(measured.authorize, measured.burst)) / 1000))
  const refresh = Math.max(
    refreshLifetime,
    Math.ceil((slack * (measured.authorize + measured.refresh + measured.burst)) / 1000) + 2 * access + 1
  )
  return { access, refresh }
}

const main = Effect.gen(function*() {
  const contract = yield* TestContract.make(contractId)
  const writeContract = yield* TestContract.make(writeContractId)
  let origin: string
  if (simulatorOrigin === undefined) {
    const measured = yield* rehearse(contract)
    const lifetimes = lifetimesFor(measured)
    yield* log(
      `rehearsal on this machine: an authorization and a read ${measured.authorize.toFixed(0)} ms, a refresh ` +
        `${measured.refresh.toFixed(0)} ms, ${concurrency} reads on a stale token ${measured.burst.toFixed(0)} ms`
    )
    if (lifetimes.access !== accessLifetime || lifetimes.refresh !== refreshLifetime) {
      yield* log(
        `lifetimes lengthened to fit this machine: access ${lifetimes.access} s (asked ${accessLifetime}), ` +
          `refresh ${lifetimes.refresh} s (asked ${refreshLifetime})`
      )
    }
    const server = yield* NodeDigimeSimulator.make({
      applicationId,
      appName: "digime-effect demo",
      contracts: [
        { contractId, publicKeyPem: contract.publicKeyPem },
        { contractId: writeContractId, publicKeyPem: writeContract.publicKeyPem, accessType: "w" }
      ],
      accessTokenLifetime: Duration.seconds(lifetimes.access),
      refreshTokenLifetime: Duration.seconds(lifetimes.refresh),
      refreshTokenExpiry: "fixed",
      strictRotation: true
    })
    origin = server.origin
    yield* log(
      `started a simulated digi.me at ${server.baseUrl} (access ${lifetimes.access} s, refresh ${lifetimes.refresh} s)`
    )
  } else {
    origin = simulatorOrigin
    const http = yield* HttpClient.HttpClient
    for (
      const registration of [
        { contractId, publicKeyPem: contract.publicKeyPem },
        { contractId: writeContractId, publicKeyPem: writeContract.publicKeyPem, accessType: "w" }
      ]
    ) {
      const registered = yield* http.execute(
        HttpClientRequest.post(`${origin}/_simulator/contracts`).pipe(HttpClientRequest.bodyUnsafeJson(registration))
      )
      if (registered.status !== 201) {
        return yield* Effect.fail(new Error(`${origin} refused the demo's contracts (HTTP ${registered.status})`))
      }
    }
    yield* log(`using the simulated digi.me at ${origin}/v1.7/ (its lifetimes apply)`)
  }
  const simulator = yield* overHttp(origin)
  Fs.mkdirSync(Path.dirname(storeFile), { recursive: true })
  const stores = Layer.merge(SqlTokenStore.layer(), SqlPendingAuthorizations.layer()).pipe(
    Layer.provide(SqliteClient.layer({ filename: storeFile }))
  )
  yield* Effect.provide(program(simulator), libraryOn(simulator, [contract, writeContract], stores))
}).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici))

Effect.runPromiseExit(main).then((exit) => {
  if (exit._tag === "Failure") {
    process.stderr.write(`demo failed: ${String(exit.cause)}\n`)
    process.exit(1)
  }
  process.exit(0)
})
