/**
 * "One refresh per token generation across processes", with real OS processes (`fixtures/worker.ts`
 * under `node --import tsx`), a simulated digi.me over real HTTP with strict refresh-token rotation,
 * and PostgreSQL as the shared store. Real time throughout: every wait is bounded, and every child
 * process and database is cleaned up by the test's scope, whatever the outcome.
 */
import {
  AutoRefresh,
  Digime,
  DigimeClient,
  TokenKey,
  TokenManager,
  TokenProtocol,
  TokenStore
} from "@digime-effect/core"
import type { TokenStoreError } from "@digime-effect/core/DigimeError"
import { TestContract } from "@digime-effect/core/testing"
import { NodeFileCipher, NodeSigner, SqlTokenStore } from "@digime-effect/node"
import { NodeDigimeSimulator } from "@digime-effect/node/testing"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Fiber, Layer, Option, Redacted, Schedule } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { inject } from "vitest"
import { startPostgres } from "./fixtures/postgres.js"
import * as Workers from "./fixtures/workers.js"

const applicationId = "app-multiprocess"
const contractId = "contract-multiprocess"
const callbackUrl = "https://app.example/digime/callback"
const contract = await Effect.runPromise(TestContract.make(contractId))

// The workers read the contract's private key from a file only they and this process know.
const secretsDir = mkdtempSync(Path.join(tmpdir(), "digime-multiprocess-"))
afterAll(() => rmSync(secretsDir, { recursive: true, force: true }))
const privateKeyFile = Path.join(secretsDir, "contract.pem")
writeFileSync(privateKeyFile, Redacted.value(contract.contract.privateKey), { mode: 0o600 })

const packageDir = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const workerScript = Path.join(packageDir, "test", "fixtures", "worker.ts")
const runId = crypto.randomUUID().slice(0, 8)

const PgLive = (url: string) => PgClient.layer({ url: Redacted.make(url) })
const SharedPg = Layer.unwrapEffect(Effect.sync(() => PgLive(inject("pgUrl"))))

// --- the simulated digi.me ------------------------------------------------------------------------

// Strict rotation, short access tokens (a lifetime of N s gives N - 1 to N s: digi.me's expiry is in
// whole seconds), refresh tokens that outlive the test.
const startSimulator = (
  accessTokenLifetime: Duration.DurationInput,
  options: Partial<NodeDigimeSimulator.Options> = {}
) =>
  Effect.gen(function*() {
    const server = yield* NodeDigimeSimulator.make({
      applicationId,
      accessTokenLifetime,
      refreshTokenLifetime: "1 hour",
      strictRotation: true,
      ...options
    })
    // The contract is made known over HTTP, as a deployment would.
    const http = yield* HttpClient.HttpClient
    const registered = yield* http.execute(
      HttpClientRequest.post(`${server.controlUrl}contracts`).pipe(
        HttpClientRequest.bodyUnsafeJson({ contractId, publicKeyPem: contract.publicKeyPem })
      )
    )
    assert.strictEqual(registered.status, 201)
    return server
  })

/** A client of this test process (or of an in-process scenario) on the given store table. */
const clientLayer = (
  server: NodeDigimeSimulator.Server,
  tableName: string,
  leadMillis: number,
  http: Layer.Layer<HttpClient.HttpClient> = NodeHttpClient.layerUndici,
  leaseMillis?: number
) =>
  Digime.layer({
    applicationId,
    contracts: [contract.contract],
    baseUrl: server.baseUrl,
    onboardUrl: server.onboardUrl,
    refreshLeadTime: Duration.millis(leadMillis),
    refreshLeaseTime: leaseMillis === undefined ? undefined : Duration.millis(leaseMillis)
  }).pipe(
    Layer.provideMerge(
      Layer.mergeAll(NodeSigner.layer, NodeFileCipher.layer, SqlTokenStore.layer({ tableName }), http)
    ),
    Layer.orDie
  )

/** The consent over HTTP: the page, Allow, the callback; then the code exchange, stored under `key`. */
const consentAndExchange = (
  server: NodeDigimeSimulator.Server,
  key: TokenKey.TokenKey,
  start: { readonly url: string; readonly state: string; readonly codeVerifier: Redacted.Redacted<string> }
) =>
  Effect.gen(function*() {
    const http = yield* HttpClient.HttpClient
    const page = yield* http.get(start.url)
    assert.strictEqual(page.status, 200)
    const answer = yield* http.execute(
      HttpClientRequest.post(`${server.onboardUrl}consent`).pipe(
        HttpClientRequest.bodyUrlParams({ url: start.url, choice: "allow" })
      )
    )
    assert.strictEqual(answer.status, 303)
    const callback = yield* TokenProtocol.parseCallback(answer.headers.location!, start.state)
    return yield* (yield* TokenManager.TokenManager).exchangeCodeForToken({
      key,
      code: callback.code,
      codeVerifier: start.codeVerifier
    })
  })

/** The whole first authorization over HTTP: pre-authorize, the consent page, Allow, exchange, store. */
const authorize = (server: NodeDigimeSimulator.Server, key: TokenKey.TokenKey) =>
  Effect.flatMap(
    DigimeClient.DigimeClient,
    (client) =>
      Effect.flatMap(client.getAuthorizeUrl({ contractId, callbackUrl }), (start) =>
        consentAndExchange(server, key, start))
  )

const versionOf = (key: TokenKey.TokenKey) =>
  Effect.flatMap(TokenStore.TokenStore, (store) => store.get(key)).pipe(
    Effect.map((stored) => Option.getOrThrow(stored))
  )

// --- worker processes -----------------------------------------------------------------------------

interface WorkerOptions {
  readonly server: NodeDigimeSimulator.Server
  readonly pgUrl: string
  readonly table: string
  readonly users: ReadonlyArray<TokenKey.TokenKey>
  readonly durationMillis: number
  readonly concurrency: number
  readonly leadMillis: number
  readonly hangRefresh?: boolean
  readonly holdRefreshMillis?: number
  readonly leaseMillis?: number
  readonly appName?: string
}

/** A worker of this test (`fixtures/worker.ts` under tsx); the scope kills it if it still runs. */
const spawnWorker = (options: WorkerOptions) =>
  Workers.spawnWorker({
    script: ["--import", "tsx", workerScript],
    cwd: packageDir,
    origin: options.server.origin,
    applicationId,
    contractId,
    privateKeyFile,
    pgUrl: options.pgUrl,
    table: options.table,
    userIds: options.users.map((key) => key.userId),
    durationMillis: options.durationMillis,
    concurrency: options.concurrency,
    leadMillis: options.leadMillis,
    hangRefresh: options.hangRefresh,
    holdRefreshMillis: options.holdRefreshMillis,
    leaseMillis: options.leaseMillis,
    appName: options.appName
  })

const assertClean = (ended: Workers.Ended, secrets: ReadonlyArray<string>) => {
  assert.strictEqual(ended.code, 0, ended.output)
  assert.isDefined(ended.done, ended.output)
  assert.deepStrictEqual(ended.done!.failures, {}, JSON.stringify(ended.done!.samples))
  assert.strictEqual(ended.done!.succeeded, ended.done!.calls)
  for (const secret of secrets) assert.notInclude(ended.output, secret)
}

/** What must never appear in a worker's output: the key and the tokens stored at the end. */
const secretsOf = (tokens: ReadonlyArray<TokenStore.Versioned>): Array<string> => [
  "PRIVATE KEY",
  ...tokens.flatMap((stored) => [
    Redacted.value(stored.token.accessToken.value),
    Redacted.value(stored.token.refreshToken.value)
  ])
]

// --- tests ----------------------------------------------------------------------------------------

// Access tokens of 8 to 9 s, refreshed 7 s ahead, so every 1 to 2 s. The lead time stays well above
// the slowest data call under this load (`maxReadMillis`: up to 2 s on 2 cores, as 1,000 calls in
// flight queue at the simulator, and over 5 s once when the whole suite ran beside it): like the
// default 60 s on digi.me's 1 hour tokens, it leaves no token to expire between the check and
// digi.me's answer. (A run with a 500 ms lead, below that latency, also had no failed call: a token
// that expires in flight is renewed once more.)
const accessLifetime = "9 seconds"
const leadMillis = 7_000

describe("one refresh per token generation across processes", () => {
  it.live(
    "4 processes × 250 concurrent calls for 12 s on 3 users: no failure, no replay, one refresh per generation",
    () =>
      Effect.gen(function*() {
        const server = yield* startSimulator(accessLifetime)
        const table = `mp_tokens_${runId}`
        const users = ["alice", "bob", "carol"].map((name) => TokenKey.make(`${name}-${runId}`, contractId))
        yield* Effect.gen(function*() {
          for (const key of users) yield* authorize(server, key)
          const initial = yield* Effect.forEach(users, versionOf)
          const before = yield* server.simulator.stats

          const workers = yield* Effect.forEach(
            [1, 2, 3, 4],
            () =>
              spawnWorker({
                server,
                pgUrl: inject("pgUrl"),
                table,
                users,
                durationMillis: 12_000,
                concurrency: 250,
                leadMillis
              })
          )
          const ended = yield* Effect.forEach(workers, (worker) => worker.ended("40 seconds"), {
            concurrency: "unbounded"
          })

          const after = yield* server.simulator.stats
          const final = yield* Effect.forEach(users, versionOf)
          for (const worker of ended) assertClean(worker, secretsOf(final))
          const calls = ended.reduce((sum, worker) => sum + worker.done!.calls, 0)
          const refreshes = after.refreshes - before.refreshes
          // Every worker ran at least 10 s of waves. (How slow the slowest data call was is logged
          // below, not asserted: on a loaded machine it can pass the lead time, and then a token
          // expires in flight and is renewed once more, which the assertions below still cover.)
          for (const worker of ended) assert.isAtLeast(worker.done!.elapsedMillis, 10_000)
          assert.strictEqual(after.replays, 0)
          assert.strictEqual(after.revocations, 0)
          assert.strictEqual(after.rejectedAssertions, 0)
          // Every call read the accounts at digi.me once (a call that met an expired token once more).
          assert.isAtLeast(after.requests.accounts - before.requests.accounts, calls)
          // The tokens really expired many times: every 1 to 2 s, so 6 or more refreshes per user in
          // 12 s; at least 3 even when a loaded machine stalls the workers for seconds.
          for (const [i, stored] of final.entries()) assert.isAtLeast(stored.version - initial[i]!.version, 3)
          // Every refresh request that reached digi.me succeeded: none was refused or replayed.
          assert.strictEqual(after.requests.token - before.requests.token, refreshes)
          // One refresh per generation. Each refresh runs under the key's lease, re-reads the
          // stored token and compare-and-sets the next version (the store's versions grow by one
          // per write, and only refreshes write during the run). So the versions added equal the
          // refreshes digi.me granted: no refresh was wasted or lost. With strict rotation and no
          // replay, no generation's refresh token was presented twice. Together: each stored
          // generation was refreshed exactly once (the last one not yet).
          const versionsAdded = final.reduce((sum, stored, i) => sum + stored.version - initial[i]!.version, 0)
          assert.strictEqual(versionsAdded, refreshes)
          yield* Effect.logInfo(
            `multi-process: ${calls} calls, ${refreshes} refreshes (${
              final.map((stored, i) => stored.version - initial[i]!.version).join("/")
            } per user), ${after.replays} replays, slowest call ${
              Math.max(...ended.map((worker) => worker.done!.maxCallMillis))
            } ms (data call alone ${Math.max(...ended.map((worker) => worker.done!.maxReadMillis))} ms)`
          )
        }).pipe(Effect.provide(clientLayer(server, table, leadMillis).pipe(Layer.provideMerge(SharedPg))))
      }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici)),
    { timeout: 60_000 }
  )

  it.live(
    "kill -9 of the process holding a refresh lease: nobody sends its refresh token again; the valid token is served, then the user is asked to reauthorize, and the grant is intact",
    () =>
      Effect.gen(function*() {
        // Tokens of 30 s: still valid whatever the machine's load when the holder has started.
        const server = yield* startSimulator("30 seconds")
        const table = `mp_crash_${runId}`
        const key = TokenKey.make(`dave-${runId}`, contractId)
        // Every process here finds the token due (a lead time longer than its life): every call
        // decides about a refresh.
        const alwaysDue = 3_600_000
        const leaseMillis = 3_000
        yield* Effect.gen(function*() {
          yield* authorize(server, key)
          const initial = yield* versionOf(key)
          const before = yield* server.simulator.stats
          const common = { server, pgUrl: inject("pgUrl"), table, users: [key], leaseMillis, leadMillis: alwaysDue }

          // The holder's first refresh takes the lease and hangs (nothing sent to digi.me).
          const holder = yield* spawnWorker({ ...common, durationMillis: 60_000, concurrency: 10, hangRefresh: true })
          yield* holder.event("holding", "30 seconds")
          assert.strictEqual((yield* versionOf(key)).lease?.version, initial.version)
          process.kill(holder.pid, "SIGKILL")
          assert.strictEqual((yield* holder.ended("10 seconds")).signal, "SIGKILL")

          // Whether it sent its refresh nobody can know, so nobody sends that refresh token again:
          // another process and this one serve the stored access token while it is valid...
          const read = Effect.flatMap(DigimeClient.DigimeClient, (client) =>
            AutoRefresh.withAutoRefresh(key, client.readAccounts))
          assert.isAbove((yield* read).length, 0)
          const other = yield* spawnWorker({ ...common, durationMillis: 3_000, concurrency: 20 })
          const ended = yield* other.ended("40 seconds")
          assertClean(ended, secretsOf([initial]))
          // ...and once it has expired (the lease long outlived), ask for a reauthorization.
          yield* Effect.sleep(Math.max(0, initial.token.accessToken.expiresAt.epochMillis - Date.now() + 100))
          const error = yield* Effect.flip(read)
          assert.strictEqual(error._tag === "ReauthRequired" && error.reason, "RefreshOutcomeUnknown")
          const after = yield* server.simulator.stats
          assert.strictEqual(after.requests.token, before.requests.token)
          assert.strictEqual(after.replays, 0)
          assert.strictEqual(after.revocations, 0)

          // The grant is intact: a reauthorization with the stored access token restores access.
          const manager = yield* TokenManager.TokenManager
          yield* consentAndExchange(server, key, yield* manager.getReauthorizeUrl({ key, callbackUrl }))
          assert.isAbove((yield* read).length, 0)
          assert.strictEqual((yield* server.simulator.stats).replays, 0)
          yield* Effect.logInfo(
            `crash: ${ended.done!.calls} calls of another process served under the dead process's lease, ` +
              `then ReauthRequired; no refresh request, ${after.replays} replays`
          )
        }).pipe(
          Effect.provide(
            clientLayer(server, table, alwaysDue, NodeHttpClient.layerUndici, leaseMillis).pipe(
              Layer.provideMerge(SharedPg)
            )
          )
        )
      }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici)),
    { timeout: 90_000 }
  )

  it.live(
    "the lease holder's PostgreSQL sessions are terminated mid-refresh: it stores its token when its pool reconnects; the other process never sends that refresh token",
    () =>
      Effect.gen(function*() {
        const server = yield* startSimulator(accessLifetime)
        const table = `mp_terminated_${runId}`
        const key = TokenKey.make(`frank-${runId}`, contractId)
        const appName = `mp-holder-${runId}`
        yield* Effect.gen(function*() {
          yield* authorize(server, key)
          const initial = yield* versionOf(key)
          const before = yield* server.simulator.stats
          const common = { server, pgUrl: inject("pgUrl"), table, users: [key] }
          // The holder's first refresh waits 3 s between taking the lease and sending.
          const holder = yield* spawnWorker({
            ...common,
            durationMillis: 10_000,
            concurrency: 5,
            leadMillis: 6_000,
            holdRefreshMillis: 3_000,
            appName
          })
          yield* holder.event("holding", "20 seconds")
          // Every session of the holder dies (pg_terminate_backend), as with an idle timeout or a
          // dropped connection. The lease is a row, not a session: it stays.
          const sql = yield* SqlClient.SqlClient
          const killed = yield* sql<{ readonly killed: boolean }>`
            SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = ${appName}
          `.pipe(Effect.orDie)
          assert.isAtLeast(killed.filter((row) => row.killed).length, 1)
          assert.strictEqual((yield* versionOf(key)).lease?.version, initial.version)
          const other = yield* spawnWorker({ ...common, durationMillis: 6_000, concurrency: 20, leadMillis: 6_000 })
          const ended = yield* Effect.forEach([holder, other], (worker) => worker.ended("40 seconds"), {
            concurrency: "unbounded"
          })
          const after = yield* server.simulator.stats
          const final = yield* versionOf(key)
          for (const worker of ended) assertClean(worker, secretsOf([final]))
          // The holder's refresh went through after the termination, and was stored.
          assert.isAbove(final.version, initial.version)
          assert.isAtLeast(after.refreshes - before.refreshes, 1)
          assert.strictEqual(after.requests.token - before.requests.token, after.refreshes - before.refreshes)
          assert.strictEqual(final.version - initial.version, after.refreshes - before.refreshes)
          assert.strictEqual(after.replays, 0)
          assert.strictEqual(after.revocations, 0)
        }).pipe(Effect.provide(clientLayer(server, table, leadMillis).pipe(Layer.provideMerge(SharedPg))))
      }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici)),
    { timeout: 60_000 }
  )

  it.live(
    "a database with idle_in_transaction_session_timeout = 50 ms and refreshes slower than that: two processes, no failure, no replay",
    () =>
      Effect.gen(function*() {
        // Each request waits 200 ms at digi.me: longer than the timeout. No transaction is open
        // while a refresh runs, so the timeout never fires.
        const server = yield* startSimulator(accessLifetime, { latency: "200 millis" })
        const database = `mp_idle_${runId}`
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE DATABASE ${sql(database)}`.pipe(Effect.orDie)
        yield* sql`ALTER DATABASE ${sql(database)} SET idle_in_transaction_session_timeout = '50ms'`.pipe(Effect.orDie)
        const url = new URL(inject("pgUrl"))
        url.pathname = `/${database}`
        const table = "tokens"
        const users = ["grace", "heidi"].map((name) => TokenKey.make(`${name}-${runId}`, contractId))
        yield* Effect.gen(function*() {
          for (const key of users) yield* authorize(server, key)
          const initial = yield* Effect.forEach(users, versionOf)
          const before = yield* server.simulator.stats
          const workers = yield* Effect.forEach([1, 2], () =>
            spawnWorker({ server, pgUrl: url.href, table, users, durationMillis: 8_000, concurrency: 20, leadMillis }))
          const ended = yield* Effect.forEach(workers, (worker) =>
            worker.ended("40 seconds"), {
            concurrency: "unbounded"
          })
          const after = yield* server.simulator.stats
          const final = yield* Effect.forEach(users, versionOf)
          for (const worker of ended) {
            assertClean(worker, secretsOf(final))
          }
          const refreshes = after.refreshes - before.refreshes
          assert.isAtLeast(refreshes, users.length)
          const versionsAdded = final.reduce((sum, stored, i) =>
            sum + stored.version - initial[i]!.version, 0)
          assert.strictEqual(versionsAdded, refreshes)
          assert.strictEqual(after.replays, 0)
          assert.strictEqual(after.revocations, 0)
        }).pipe(Effect.provide(clientLayer(server, table, leadMillis).pipe(Layer.provideMerge(PgLive(url.href)))))
      }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici), Effect.provide(SharedPg)),
    { timeout: 60_000 }
  )

  it.live(
    "PostgreSQL stopped mid-run: TokenStoreError while it is down, no token lost, recovery when it is back",
    () =>
      Effect.gen(function*() {
        // Access tokens of 5 to 6 s, due 4.5 s ahead: a token refreshed during an outage of a few
        // seconds is still valid when it is finally stored (see the note at step 2).
        const outageLead = 4_500
        const server = yield* startSimulator("6 seconds")
        const postgres = yield* Effect.acquireRelease(
          Effect.promise(() => startPostgres()),
          (postgres) => Effect.sync(() => postgres.dispose())
        )
        const stopDatabase = Effect.promise(() => postgres.stop())
        const startDatabase = Effect.promise(() => postgres.start())
        const table = `mp_outage_${runId}`
        const key = TokenKey.make(`erin-${runId}`, contractId)

        // Refresh requests can be held at the door, to stop the database while one is in flight.
        let gate: { readonly reached: Deferred.Deferred<void>; readonly open: Deferred.Deferred<void> } | undefined
        const GatedHttp = Layer.effect(
          HttpClient.HttpClient,
          Effect.map(HttpClient.HttpClient, (client) =>
            HttpClient.mapRequestEffect(client, (request) => {
              const held = gate
              // The client prefixes its base URL after this mapping: the path is relative here.
              return held !== undefined && request.method === "POST" && /(^|\/)oauth\/token$/.test(request.url)
                ? Effect.zipRight(Deferred.succeed(held.reached, undefined), Deferred.await(held.open)).pipe(
                  Effect.as(request)
                )
                : Effect.succeed(request)
            }))
        ).pipe(Layer.provide(NodeHttpClient.layerUndici))

        yield* Effect.gen(function*() {
          const client = yield* DigimeClient.DigimeClient
          const read = AutoRefresh.withAutoRefresh(key, client.readAccounts)
          const sleepUntil = (epochMillis: number) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sleep(Math.max(0, epochMillis - now) + 50))
          // Once the database is back, the pool reconnects: bounded retries, only of store errors.
          const readWhenBack = read.pipe(
            Effect.retry({
              while: (error) => error._tag === "TokenStoreError",
              schedule: Schedule.spaced("200 millis").pipe(Schedule.upTo("10 seconds"))
            })
          )
          const assertSafe = (error: { readonly _tag: string }, stored: TokenStore.Versioned) => {
            assert.strictEqual(error._tag, "TokenStoreError")
            const storeError = error as TokenStoreError
            assert.match(storeError.operation, /^SqlTokenStore\./)
            for (const secret of secretsOf([stored])) {
              assert.notInclude(storeError.message, secret)
              assert.notInclude(JSON.stringify(storeError), secret)
            }
          }

          // 1. The database is down when the token has expired: the lease cannot be taken, so no
          //    refresh is sent; the call fails with TokenStoreError; once the database is back,
          //    the next call refreshes once.
          yield* authorize(server, key)
          yield* read
          const v1 = yield* versionOf(key)
          yield* stopDatabase
          yield* sleepUntil(v1.token.accessToken.expiresAt.epochMillis)
          assertSafe(yield* Effect.flip(read), v1)
          assert.strictEqual((yield* server.simulator.stats).refreshes, 0)
          yield* startDatabase
          yield* readWhenBack
          const v2 = yield* versionOf(key)
          assert.strictEqual(v2.version, v1.version + 1)
          assert.strictEqual((yield* server.simulator.stats).refreshes, 1)

          // 2. The database goes down while a refresh is in flight: digi.me rotates the refresh
          //    token, the new token cannot be stored and is kept in memory; once the database is
          //    back, it is stored without spending its predecessor's refresh token again.
          //    If the kept token is itself due by then, it is stored and then refreshed as usual
          //    (with its own, unspent refresh token).
          yield* sleepUntil(v2.token.accessToken.expiresAt.epochMillis - outageLead)
          const held = { reached: yield* Deferred.make<void>(), open: yield* Deferred.make<void>() }
          gate = held
          const inFlight = yield* Effect.fork(read)
          yield* Deferred.await(held.reached).pipe(Effect.timeout("10 seconds"))
          gate = undefined
          yield* stopDatabase
          yield* Deferred.succeed(held.open, undefined)
          assertSafe(yield* Effect.flip(Fiber.join(inFlight).pipe(Effect.timeout("20 seconds"))), v2)
          assert.strictEqual((yield* server.simulator.stats).refreshes, 2)
          yield* startDatabase
          yield* readWhenBack
          const v3 = yield* versionOf(key)
          assert.isAtLeast(v3.version, v2.version + 1)
          assert.notStrictEqual(
            Redacted.value(v3.token.refreshToken.value),
            Redacted.value(v2.token.refreshToken.value)
          )
          const stats = yield* server.simulator.stats
          // The kept token was stored (one version) without its predecessor being refreshed again;
          // any further version is a refresh of the kept token, which was due by then.
          assert.strictEqual(stats.refreshes, 2 + (v3.version - v2.version - 1), "one refresh per stored version")
          assert.strictEqual(stats.replays, 0)
          assert.strictEqual(stats.revocations, 0)
        }).pipe(
          Effect.provide(
            clientLayer(server, table, outageLead, GatedHttp).pipe(Layer.provideMerge(PgLive(postgres.url)))
          )
        )
      }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici)),
    { timeout: 60_000 }
  )
})
