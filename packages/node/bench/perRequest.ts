/**
 * 3. What one request costs through the library, against the same request written by hand with
 * nothing but `node:crypto` and undici (a key parsed once, one RSA-PSS signature, one HTTP round
 * trip to the same simulator, the answer read and checked):
 *
 * - a data call with a valid token: `withAutoRefresh(key, client.readAccounts)` against a signed
 *   `GET permission-access/accounts` by hand;
 * - a refresh end to end (`TokenManager.refresh(key)`: the store's lease, a re-read, the signed
 *   request, the verification of digi.me's answer, the compare-and-set) against the same refresh by
 *   hand (one signature, one round trip, one verification with the public key in memory, one store
 *   write), on the memory store and on PostgreSQL;
 * - the first call of a process after its layer is built, against the later calls of the same
 *   process (fresh OS processes, see `firstCall.ts`).
 *
 * Library and hand-written requests alternate, on two users of one simulator, so that drift
 * touches both alike. Also counted: the key-set (JWKS) downloads per refresh once the keys are
 * cached (target 0).
 */
import { AutoRefresh, DigimeClient, TokenManager, TokenStore } from "@digime-effect/core"
import { DateTime, Effect, Option, Redacted } from "effect"
import { execFile } from "node:child_process"
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import type { NodeDigimeSimulator } from "../src/testing/index.js"
import { makeHandWritten } from "./handWritten.js"
import {
  applicationId,
  authorize,
  clientLayer,
  contractId,
  keyOf,
  median,
  quantile,
  refreshRequests,
  type SectionOptions,
  startSimulator,
  type Store,
  storeLayer,
  testContract
} from "./support.js"

const section = "3 per request"
const clientId = `${applicationId}_${contractId}`

type Steps = Readonly<Record<string, number>>
const stepMedians = (steps: ReadonlyArray<Steps>) =>
  Object.fromEntries(Object.keys(steps[0] ?? {}).map((name) => [name, median(steps.map((step) => step[name]!))]))

/**
 * `repetitions` pairs of the library's request (timed here) and the hand-written one (timed by
 * itself, step by step), which goes first alternating: neither always follows the other's garbage.
 */
const alternate = <E, R>(
  repetitions: number,
  library: Effect.Effect<unknown, E, R>,
  byHand: Effect.Effect<{ readonly steps: Steps }, E, R>
) =>
  Effect.gen(function*() {
    const libraryMillis: Array<number> = []
    const floorSteps: Array<Steps> = []
    for (let i = 0; i < repetitions; i++) {
      if (i % 2 === 1) floorSteps.push((yield* byHand).steps)
      const t0 = performance.now()
      yield* library
      libraryMillis.push(performance.now() - t0)
      if (i % 2 === 0) floorSteps.push((yield* byHand).steps)
    }
    return { libraryMillis, floorMillis: floorSteps.map((steps) => steps["total"]!), floorSteps }
  })

/** The paired figures of `library` against `floor`, both in milliseconds, one pair per repetition. */
const paired = (library: ReadonlyArray<number>, floor: ReadonlyArray<number>) => ({
  value: median(library),
  floor: median(floor),
  ratio: median(library) / median(floor),
  details: {
    repetitions: library.length,
    overheadMicros: (median(library) - median(floor)) * 1000,
    pairedRatio: median(library.map((value, i) => value / floor[i]!)),
    p90: quantile(library, 0.9),
    floorP90: quantile(floor, 0.9)
  }
})

export const run = (options: SectionOptions) =>
  Effect.gen(function*() {
    const server = yield* startSimulator({ accessTokenLifetime: "1 hour" })
    const jwks = yield* Effect.promise(async () => {
      const response = await fetch(server.jwksUrl)
      return await response.json() as { readonly keys: ReadonlyArray<{ readonly pem: string }> }
    })
    const publicKey = Crypto.createPublicKey(jwks.keys[0]!.pem)
    const privateKeyPem = Redacted.value(testContract.contract.privateKey)

    yield* dataCall(server, privateKeyPem, options)
    for (const store of ["memory", "postgres"] as ReadonlyArray<Store>) {
      yield* refresh(server, privateKeyPem, publicKey, store, options)
    }
    yield* firstCall(server, options)
  }).pipe(Effect.scoped)

// ---------------------------------------------------------------------------------------------
// a data call with a valid token
// ---------------------------------------------------------------------------------------------

const dataCall = (server: NodeDigimeSimulator.Server, privateKeyPem: string, options: SectionOptions) =>
  Effect.gen(function*() {
    const repetitions = options.quick ? 30 : 400
    const handWritten = makeHandWritten({ baseUrl: server.baseUrl, clientId, privateKeyPem })
    yield* Effect.addFinalizer(() => Effect.promise(() => handWritten.agent.close()))
    const library = keyOf("data-call-library")
    const byHand = keyOf("data-call-by-hand")
    yield* Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const tokens = yield* TokenStore.TokenStore
      yield* authorize(server, library)
      yield* authorize(server, byHand)
      const accessToken = Redacted.value(
        Option.getOrThrow(yield* Effect.orDie(tokens.get(byHand))).token.accessToken.value
      )
      const call = AutoRefresh.withAutoRefresh(library, client.readAccounts).pipe(Effect.orDie)
      // Warm-up: both paths, uncounted.
      for (let i = 0; i < 20; i++) {
        yield* call
        yield* Effect.promise(() => handWritten.dataCall(accessToken))
      }
      const before = yield* refreshRequests(server)
      const { floorMillis, floorSteps, libraryMillis } = yield* alternate(
        repetitions,
        Effect.flatMap(
          call,
          (accounts) => accounts.length === 0 ? Effect.dieMessage("data call: no accounts") : Effect.void
        ),
        Effect.promise(() => handWritten.dataCall(accessToken))
      )
      const after = yield* refreshRequests(server)
      const figure = paired(libraryMillis, floorMillis)
      options.report.record({
        section,
        name: "a data call with a valid token (readAccounts)",
        value: figure.value,
        unit: "ms",
        floor: figure.floor,
        floorName: "ms by hand",
        ratio: figure.ratio,
        target: "≤ 1.10× by hand",
        pass: figure.ratio <= 1.1,
        details: {
          ...figure.details,
          floorSteps: stepMedians(floorSteps),
          // Every library call used the stored token as it was: nothing was refreshed.
          refreshRequests: after.refreshRequests - before.refreshRequests
        }
      })
    }).pipe(Effect.provide(clientLayer(server, storeLayer("memory", { pgUrl: options.pgUrl }))))
  }).pipe(Effect.scoped)

// ---------------------------------------------------------------------------------------------
// a refresh end to end
// ---------------------------------------------------------------------------------------------

const refresh = (
  server: NodeDigimeSimulator.Server,
  privateKeyPem: string,
  publicKey: Crypto.KeyObject,
  store: Store,
  options: SectionOptions
) =>
  Effect.gen(function*() {
    const repetitions = options.quick ? 10 : 150
    const handWritten = makeHandWritten({ baseUrl: server.baseUrl, clientId, privateKeyPem, publicKey })
    yield* Effect.addFinalizer(() => Effect.promise(() => handWritten.agent.close()))
    const library = keyOf(`refresh-library-${store}`)
    const byHand = keyOf(`refresh-by-hand-${store}`)
    yield* Effect.gen(function*() {
      const manager = yield* TokenManager.TokenManager
      const tokens = yield* TokenStore.TokenStore
      yield* authorize(server, library)
      yield* authorize(server, byHand)
      let current = Option.getOrThrow(yield* Effect.orDie(tokens.get(byHand)))
      // Warm-up: both paths, uncounted.
      for (let i = 0; i < 5; i++) {
        yield* manager.refresh(library).pipe(Effect.orDie)
        current = (yield* handWritten.refresh(byHand, current)).versioned
      }
      const before = yield* refreshRequests(server)
      const { floorMillis, floorSteps, libraryMillis } = yield* alternate(
        repetitions,
        manager.refresh(library).pipe(Effect.orDie),
        Effect.map(Effect.suspend(() => handWritten.refresh(byHand, current)), (result) => {
          current = result.versioned
          return result
        })
      )
      const after = yield* refreshRequests(server)
      const figure = paired(libraryMillis, floorMillis)
      const limit = store === "memory" ? 1.15 : 1.3
      options.report.record({
        section,
        name: `one refresh end to end (${store} store)`,
        value: figure.value,
        unit: "ms",
        floor: figure.floor,
        floorName: "ms by hand",
        ratio: figure.ratio,
        target: `≤ ${limit.toFixed(2)}× by hand`,
        pass: figure.ratio <= limit,
        details: {
          ...figure.details,
          floorSteps: stepMedians(floorSteps),
          ...(store === "postgres"
            ? { note: "the library also takes the refresh's lease (one conditional UPDATE) before sending" }
            : {})
        }
      })
      options.report.record({
        section,
        name: `key-set (JWKS) downloads per refresh, steady state (${store} store)`,
        value: (after.jwks - before.jwks) / repetitions,
        unit: "per refresh",
        target: "0",
        pass: after.jwks === before.jwks,
        details: {
          libraryRefreshes: repetitions,
          // Both paths: every request digi.me received was a successful refresh, none a replay.
          refreshRequests: after.refreshRequests - before.refreshRequests,
          refreshesGranted: after.refreshes - before.refreshes,
          replays: after.replays - before.replays,
          jwksDownloads: after.jwks - before.jwks
        }
      })
    }).pipe(Effect.provide(clientLayer(
      server,
      storeLayer(store, { pgUrl: options.pgUrl, tableName: `bench_refresh_${process.pid}` })
    )))
  }).pipe(Effect.scoped)

// ---------------------------------------------------------------------------------------------
// the first call of a process
// ---------------------------------------------------------------------------------------------

const runFile = promisify(execFile)
// The bundled child sits next to the bundled benchmark.
const firstCallScript = Path.join(Path.dirname(fileURLToPath(import.meta.url)), "firstCall.mjs")

/** What one child process measured: see `firstCall.ts`. */
interface ChildResult {
  readonly layerMillis: number
  readonly firstMillis: number
  readonly laterMillis: number
  readonly handFirstMillis: number
  readonly handLaterMillis: number
}

const firstCall = (server: NodeDigimeSimulator.Server, options: SectionOptions) =>
  Effect.gen(function*() {
    const processes = options.quick ? 2 : 8
    const results: Array<ChildResult> = []
    for (let i = 0; i < processes; i++) {
      const key = keyOf(`first-call-${i}`)
      // The token is made here and handed over: the child only builds its layer and calls.
      const stored = yield* Effect.provide(
        Effect.flatMap(authorize(server, key), () =>
          Effect.flatMap(TokenStore.TokenStore, (tokens) => Effect.orDie(tokens.get(key)))),
        clientLayer(server, storeLayer("memory", { pgUrl: options.pgUrl }))
      )
      const token = Option.getOrThrow(stored).token
      const { stdout } = yield* Effect.promise(() =>
        runFile(process.execPath, [firstCallScript], {
          env: {
            ...process.env,
            BENCH_CLIENT_ID: clientId,
            // Half the processes make their hand-written requests first.
            BENCH_HAND_FIRST: i % 2 === 0 ? "0" : "1",
            BENCH_BASE_URL: server.baseUrl,
            BENCH_ONBOARD_URL: server.onboardUrl,
            BENCH_PRIVATE_KEY: Redacted.value(testContract.contract.privateKey),
            BENCH_TOKEN: JSON.stringify({
              accessToken: Redacted.value(token.accessToken.value),
              accessExpiresAt: DateTime.toEpochMillis(token.accessToken.expiresAt),
              refreshToken: Redacted.value(token.refreshToken.value),
              refreshExpiresAt: DateTime.toEpochMillis(token.refreshToken.expiresAt)
            })
          }
        })
      )
      results.push(JSON.parse(stdout.trim().split("\n").at(-1)!) as ChildResult)
    }
    const ratios = results.map((result) =>
      result.firstMillis / result.laterMillis
    )
    const handRatios = results.map((result) => result.handFirstMillis / result.handLaterMillis)
    const ratio = median(ratios)
    options.report.record({
      section,
      name: "the first call after the layer is built (readAccounts)",
      value: median(results.map((result) => result.firstMillis)),
      unit: "ms",
      floor: median(results.map((result) => result.laterMillis)),
      floorName: "ms a later call of the same process",
      ratio,
      target: "≤ 1.2× a later call",
      pass: ratio <= 1.2,
      details: {
        processes,
        ratios,
        layerMillis: median(results.map((result) => result.layerMillis)),
        // The same in the hand-written client: its first request against its later ones.
        handFirstMillis: median(results.map((result) => result.handFirstMillis)),
        handLaterMillis: median(results.map((result) => result.handLaterMillis)),
        handRatio: median(handRatios)
      }
    })
  })
