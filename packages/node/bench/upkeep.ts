/**
 * 9. Fleet upkeep: N keys (100,000; 10,000 with `--quick`) in one PostgreSQL table, kept fresh by
 * `TokenUpkeep`. Each instance has its own connection pool, `TokenManager`, `TokenEvents` and
 * upkeep daemon (`interval` 1 s, `batchSize` 100, `concurrency` 8); all run in this one process, on
 * the real clock. Three runs, the table seeded again (the same rows) before each:
 *
 * - **burst, 1 instance** and **burst, 4 instances**: every key comes due within 20 s (2 s with
 *   `--quick`), faster than they can be refreshed, so that the time until the last key is refreshed
 *   measures the fleet's capacity;
 * - **steady, 4 instances**: keys come due at half the rate the 4 instances reached in the burst,
 *   for 30 s (8 s), the rest of the table due a day later.
 *
 * Measured: refreshes per key and generation (every key due refreshed, none twice: counted from
 * each instance's `Refreshed` events and checked against the versions in the table), replays
 * (counted by digi.me), the keys the instances claimed (their sum is the number of keys due when
 * no key was claimed twice), throughput (keys refreshed per second, from the first key due to the
 * last refreshed) of 4 instances against 1 (the scaling ratio), the lag behind the due time in the
 * steady run (p50, p99: from the instant a key becomes claimable, `accessExpiresAt −
 * refreshLeadTime − interval`, to its `Refreshed` event), and the claim statement's plan and time
 * (`EXPLAIN ANALYZE`, rolled back) on the seeded table.
 *
 * digi.me is a counting stub (`DigimeClient` with `requestRefresh` and the refresh answer's
 * verification replaced): strict rotation (each refresh token is accepted once; a second use is a
 * replay, refused with `401 InvalidToken`), no HTTP, no signature, no verification. With the real
 * client and the simulator on these 2 cores, their RSA work would be most of what is measured;
 * these figures are the library's and PostgreSQL's cost, digi.me's crypto excluded.
 */
import {
  DigimeClient,
  DigimeConfig,
  DigimeError,
  TokenEvents,
  TokenKey,
  TokenManager,
  TokenStore,
  TokenUpkeep,
  UserAccessToken
} from "@digime-effect/core"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, DateTime, Effect, Layer, Queue, Redacted } from "effect"
import { NodeDigime, SqlTokenStore } from "../src/index.js"
import { applicationId, contractId, quantile, type SectionOptions, testContract } from "./support.js"

const section = "9 fleet upkeep"
const fleet = 4
const intervalMillis = 1_000
const upkeepOptions: TokenUpkeep.Options = { interval: intervalMillis, batchSize: 100, concurrency: 8 }
// The library's default lead time: a key is claimable `lead + interval` before its access token expires.
const leadMillis = 60_000
const refreshLifetimeMillis = 30 * 24 * 3_600_000
const newAccessLifetimeMillis = 3_600_000

// ---------------------------------------------------------------------------------------------
// digi.me: a counting stub with strict rotation
// ---------------------------------------------------------------------------------------------

interface DigimeCounts {
  /** Refresh requests received. */
  requests: number
  /** Refresh tokens accepted (each once). */
  accepted: number
  /** A refresh token sent again after it was accepted. */
  replays: number
  /** A refresh token digi.me never issued. */
  unknown: number
}

const makeStub = (real: DigimeClient.Service) => {
  // Every refresh token issued (seeded or answered), and whether it was spent.
  const issued = new Map<string, { spent: boolean }>()
  // The answers handed out and not yet verified: the answer's text stands for the signed JWT.
  const answers = new Map<string, UserAccessToken.UserAccessToken>()
  const counts: DigimeCounts = { requests: 0, accepted: 0, replays: 0, unknown: 0 }
  let serial = 0
  const refused = (description: string) =>
    new DigimeError.ApiError({ operation: "refreshToken", status: 401, code: "InvalidToken", description })
  const service: DigimeClient.Service = {
    ...real,
    requestRefresh: ({ refreshToken }) =>
      Effect.suspend(() => {
        counts.requests++
        const value = Redacted.value(refreshToken)
        const state = issued.get(value)
        if (state === undefined) {
          counts.unknown++
          return Effect.fail(refused("The refresh token is invalid"))
        }
        if (state.spent) {
          counts.replays++
          return Effect.fail(refused("The refresh token was used already"))
        }
        state.spent = true
        counts.accepted++
        const n = ++serial
        const now = Date.now()
        const token = new UserAccessToken.UserAccessToken({
          accessToken: new UserAccessToken.Token({
            value: Redacted.make(`a1-${n}`),
            expiresAt: DateTime.unsafeMake(now + newAccessLifetimeMillis)
          }),
          refreshToken: new UserAccessToken.Token({
            value: Redacted.make(`r1-${n}`),
            expiresAt: DateTime.unsafeMake(now + refreshLifetimeMillis)
          })
        })
        issued.set(`r1-${n}`, { spent: false })
        const answer = `answer-${n}`
        answers.set(answer, token)
        return Effect.succeed(Redacted.make(answer))
      }),
    verifyTokenAnswer: (operation, answer) =>
      Effect.suspend(() => {
        const token = operation === "refreshToken" ? answers.get(Redacted.value(answer)) : undefined
        if (token === undefined) return real.verifyTokenAnswer(operation, answer)
        answers.delete(Redacted.value(answer))
        return Effect.succeed(token)
      })
  }
  return {
    service,
    counts,
    /** A fresh digi.me for a run: the seeded refresh tokens, nothing spent. */
    reset: (n: number) => {
      issued.clear()
      answers.clear()
      counts.requests =
        counts.accepted =
        counts.replays =
        counts.unknown =
          0
      for (let i = 0; i < n; i++) issued.set(`r0-${i}`, { spent: false })
    }
  }
}

// ---------------------------------------------------------------------------------------------
// the seed
// ---------------------------------------------------------------------------------------------

const userOf = (i: number) => `upkeep-${i}`
const indexOf = (userId: string) => Number(userId.slice("upkeep-".length))

interface Seed {
  /** Keys in the table. */
  readonly n: number
  /** Keys that become due during the run (the first ones); the others are due a day later. */
  readonly due: number
  /** When the first key becomes claimable (epoch ms). */
  readonly firstDue: number
  /** The due keys become claimable one after another over this time. */
  readonly windowMillis: number
}

const laterMillis = 86_400_000

/** When key `i` becomes claimable: `accessExpiresAt − lead − interval`. */
const dueOf = (seed: Seed, i: number) =>
  i < seed.due ? seed.firstDue + Math.floor((seed.windowMillis * i) / seed.due) : seed.firstDue + laterMillis

// The rows the store writes on `set` (SqlTokenStore.ts): the key's id and ids, version 1, the token
// in clear as `UserAccessToken.UserAccessTokenFromJson` encodes it (ISO expiries with
// milliseconds), both expiries and the same due times. One statement, in PostgreSQL.
const seedTable = (sql: SqlClient.SqlClient, table: string, seed: Seed) => {
  const iso = (column: string) =>
    sql.unsafe(
      `to_char(('epoch'::timestamptz + ${column} * interval '1 millisecond') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`
    )
  const offset = seed.firstDue + leadMillis + intervalMillis
  const refreshAt = seed.firstDue + refreshLifetimeMillis
  return sql`
    INSERT INTO ${sql(table)} (id, user_id, contract_id, version, token, updated_at, access_expires_at,
      refresh_expires_at, access_due_at, refresh_due_at)
    SELECT ${encodeURIComponent(contractId)} || '/' || 'upkeep-' || i, 'upkeep-' || i, ${contractId}, 1,
      json_build_object(
        'accessToken', json_build_object('value', 'a0-' || i, 'expiresAt', ${iso("access")}),
        'refreshToken', json_build_object('value', 'r0-' || i, 'expiresAt', ${iso("refresh")})
      )::text,
      CURRENT_TIMESTAMP, access, refresh, access, refresh
    FROM (
      SELECT i, ${offset}::bigint + CASE WHEN i < ${seed.due}
          THEN (${seed.windowMillis}::bigint * i) / ${Math.max(1, seed.due)}::bigint
          ELSE ${laterMillis}::bigint END AS access,
        ${refreshAt}::bigint AS refresh
      FROM generate_series(0, ${seed.n - 1}) AS i
    ) AS rows
  `
}

// The store's claim of due access tokens (SqlTokenStore.ts, `claim`), as PostgreSQL plans it.
const claimStatement = (sql: SqlClient.SqlClient, table: string, before: number, until: number, limit: number) =>
  sql`
    WITH claimed AS (SELECT id, access_due_at AS due FROM ${sql(table)} WHERE access_due_at < ${before}
      AND token IS NOT NULL AND (reconnect_version IS NULL OR reconnect_version <> version)
      ORDER BY access_due_at, id LIMIT ${limit} FOR UPDATE SKIP LOCKED)
    UPDATE ${sql(table)} AS t SET access_due_at = ${until} FROM claimed WHERE t.id = claimed.id
    RETURNING t.id, t.user_id, t.contract_id, t.version, t.access_expires_at, t.refresh_expires_at, claimed.due
  `

class RolledBack {
  readonly _tag = "RolledBack"
  constructor(readonly plan: ReadonlyArray<string>) {}
}

// EXPLAIN ANALYZE runs the claim: in a transaction that is rolled back.
const explainClaim = (sql: SqlClient.SqlClient, table: string, seed: Seed) => {
  const before = dueOf(seed, Math.floor(seed.due / 2)) + leadMillis + intervalMillis
  const explained = sql<{ readonly "QUERY PLAN": string }>`EXPLAIN (ANALYZE, BUFFERS) ${
    claimStatement(sql, table, before, before + 60_000, upkeepOptions.batchSize!)
  }`
  return sql.withTransaction(
    Effect.flatMap(explained, (rows) => Effect.fail(new RolledBack(rows.map((row) => row["QUERY PLAN"]))))
  ).pipe(
    Effect.catchAll((error) => error instanceof RolledBack ? Effect.succeed(error.plan) : Effect.fail(error))
  )
}

// ---------------------------------------------------------------------------------------------
// a run of 1 or 4 instances
// ---------------------------------------------------------------------------------------------

interface Tally {
  /** Refreshed events per key index. */
  readonly refreshes: Uint8Array
  refreshed: number
  failed: number
  reconnect: number
  readonly lags: Array<number>
  lastAt: number
}

interface Outcome {
  readonly instances: number
  readonly seed: Seed
  readonly done: boolean
  readonly keysRefreshed: number
  readonly maxRefreshesPerKey: number
  readonly claims: ReadonlyArray<number>
  readonly refreshedPerInstance: ReadonlyArray<number>
  readonly failedEvents: number
  readonly reconnectEvents: number
  readonly digime: DigimeCounts
  readonly versions: { readonly v1: number; readonly v2: number; readonly newer: number }
  /** Keys refreshed per second, from the first key claimable to the last refreshed. */
  readonly keysPerSecond: number
  readonly elapsedMillis: number
  readonly lagMillis: { readonly p50: number; readonly p90: number; readonly p99: number; readonly max: number }
  readonly seedMillis: number
  /** How long before the first key was claimable every instance was running (negative: late). */
  readonly startedBeforeFirstDueMillis: number
}

export const run = (options: SectionOptions) =>
  Effect.gen(function*() {
    const n = options.quick ? 10_000 : 100_000
    // The burst: every key due within a window, faster than the fleet refreshes them, so that
    // throughput is the fleet's capacity and not the rate at which keys come due.
    const burstWindowMillis = options.quick ? 2_000 : 20_000
    // The steady load: a share of the keys due at half the 4 instances' throughput, for this long.
    const steadyMillis = options.quick ? 8_000 : 30_000
    const timeoutMillis = options.quick ? 120_000 : 900_000
    const table = `upkeep_bench_${process.pid}_${Math.floor(Math.random() * 1e6)}`
    const url = Redacted.make(options.pgUrl)
    const configOptions: DigimeConfig.Options = {
      applicationId,
      contracts: [testContract.contract],
      // Never called: digi.me is the stub.
      baseUrl: "http://127.0.0.1:9/v1.7/",
      refreshLeadTime: leadMillis
    }
    const { config, real } = yield* Effect.map(
      Layer.build(
        DigimeClient.layer.pipe(
          Layer.provide(NodeDigime.layerPlatform),
          Layer.provideMerge(DigimeConfig.layer(configOptions)),
          Layer.orDie
        )
      ),
      (context) => ({
        config: Context.get(context, DigimeConfig.DigimeConfig),
        real: Context.get(context, DigimeClient.DigimeClient)
      })
    )
    const stub = makeStub(real)

    // The run's own pool, to seed and read back; the table is dropped at the end.
    const admin = yield* Effect.map(
      Layer.build(PgClient.layer({ url, maxConnections: 2 }).pipe(Layer.orDie)),
      (context) => Context.get(context, SqlClient.SqlClient)
    )
    yield* Effect.orDie(
      SqlTokenStore.migrate({ tableName: table }).pipe(Effect.provideService(SqlClient.SqlClient, admin))
    )
    yield* Effect.addFinalizer(() => Effect.ignore(admin`DROP TABLE IF EXISTS ${admin(table)}`))

    // The table emptied and seeded again; digi.me forgets every token but the seeded ones.
    const reseed = (seed: Seed) =>
      Effect.gen(function*() {
        const started = performance.now()
        stub.reset(n)
        yield* admin`TRUNCATE ${admin(table)}`
        yield* seedTable(admin, table, seed)
        yield* admin`ANALYZE ${admin(table)}`
        return performance.now() - started
      }).pipe(Effect.orDie)

    // The seed reads back through the store as the store would have written it.
    const check = (seed: Seed) =>
      Effect.gen(function*() {
        const store = yield* Effect.provideService(SqlTokenStore.make({ tableName: table }), SqlClient.SqlClient, admin)
        for (const i of [0, Math.floor(seed.due / 2), seed.due - 1, n - 1]) {
          const found = yield* store.get(TokenKey.make(userOf(i), contractId))
          const expected = dueOf(seed, i) + leadMillis + intervalMillis
          if (
            found._tag === "None" || found.value.version !== 1 ||
            TokenStore.expiryFields(found.value.token).accessExpiresAt !== expected ||
            Redacted.value(found.value.token.refreshToken.value) !== `r0-${i}`
          ) {
            return yield* Effect.dieMessage(`upkeep: seeded key ${i} does not read back as written`)
          }
        }
        const listed = yield* store.listDue({ expiry: "AccessToken", before: seed.firstDue + laterMillis, limit: 1 })
        if (listed.length !== 1) return yield* Effect.dieMessage("upkeep: the seeded keys are not listed as due")
      }).pipe(Effect.orDie)

    // One instance: its own pool, store, events, token manager and upkeep daemon.
    const instance = (tally: Tally, seedOf: () => Seed) =>
      Effect.gen(function*() {
        const pool = yield* Layer.build(
          SqlTokenStore.layer({ tableName: table }).pipe(
            Layer.provide(PgClient.layer({ url, maxConnections: 10 })),
            Layer.orDie
          )
        )
        const store = Context.get(pool, TokenStore.TokenStore)
        // Room for every event of the run: a reader that fell behind would lose the oldest.
        const events = yield* Effect.orDie(TokenEvents.make({ capacity: n }))
        const queue = yield* events.subscribe
        const own = { refreshed: 0 }
        yield* Queue.takeBetween(queue, 1, 4_096).pipe(
          Effect.map((chunk) => {
            for (const event of chunk) {
              if (event._tag === "Refreshed") {
                const i = indexOf(event.key.userId)
                if (tally.refreshes[i] === 0) tally.refreshed++
                tally.refreshes[i] = Math.min(255, tally.refreshes[i]! + 1)
                tally.lags.push(event.at - dueOf(seedOf(), i))
                tally.lastAt = Math.max(tally.lastAt, event.at)
                own.refreshed++
              } else if (event._tag === "RefreshFailed") {
                tally.failed++
              } else if (event._tag === "ReauthorizationRequired") {
                tally.reconnect++
              }
            }
          }),
          Effect.forever,
          Effect.forkScoped
        )
        const services = Context.make(DigimeConfig.DigimeConfig, config).pipe(
          Context.add(DigimeClient.DigimeClient, stub.service),
          Context.add(TokenStore.TokenStore, store),
          Context.add(TokenEvents.TokenEvents, events)
        )
        const manager = yield* Effect.provide(TokenManager.make, services)
        const upkeep = yield* Effect.orDie(
          Effect.provide(TokenUpkeep.make(upkeepOptions), Context.add(services, TokenManager.TokenManager, manager))
        )
        return {
          upkeep,
          own,
          start: Effect.orDie(Effect.provide(TokenUpkeep.run(upkeep, upkeepOptions), services))
        }
      })

    // The fleet is built (pools connected) before the seed, and running before the first key is due:
    // the first key is due twice the last seed's time (and a second or two) after the fleet is built.
    let lastSeedMillis = 0
    const phase = (instances: number, due: number, windowMillis: number): Effect.Effect<Outcome> =>
      Effect.gen(function*() {
        const margin = (options.quick ? 1_000 : 2_000) + 2 * Math.ceil(lastSeedMillis)
        let seed: Seed = { n, due, windowMillis, firstDue: 0 }
        const tally: Tally = {
          refreshes: new Uint8Array(n),
          refreshed: 0,
          failed: 0,
          reconnect: 0,
          lags: [],
          lastAt: 0
        }
        const members = yield* Effect.forEach(Array.from({ length: instances }), () => instance(tally, () => seed))
        seed = { ...seed, firstDue: Date.now() + margin }
        const seedMillis = yield* reseed(seed)
        lastSeedMillis = seedMillis
        yield* Effect.forEach(members, (member) => member.start, { discard: true })
        const startedBeforeFirstDueMillis = seed.firstDue - Date.now()
        const deadline = Date.now() + timeoutMillis
        while (tally.refreshed < due && Date.now() < deadline) yield* Effect.sleep("100 millis")
        // A moment for whatever would come after: a second refresh of a key, a replay.
        yield* Effect.sleep("1 second")
        const totals = yield* Effect.forEach(members, (member) => member.upkeep.totals)
        const [counted] = yield* Effect.orDie(
          admin<{ readonly v1: string; readonly v2: string; readonly newer: string }>`
          SELECT count(*) FILTER (WHERE version = 1) AS v1, count(*) FILTER (WHERE version = 2) AS v2,
            count(*) FILTER (WHERE version > 2) AS newer
          FROM ${admin(table)}
        `
        )
        const elapsedMillis = tally.lastAt - seed.firstDue
        return {
          instances,
          seed,
          done: tally.refreshed === due,
          keysRefreshed: tally.refreshed,
          maxRefreshesPerKey: tally.refreshes.reduce((max, count) => Math.max(max, count), 0),
          claims: totals.map((round) => round.claimed),
          refreshedPerInstance: members.map((member) => member.own.refreshed),
          failedEvents: tally.failed,
          reconnectEvents: tally.reconnect,
          digime: { ...stub.counts },
          versions: { v1: Number(counted!.v1), v2: Number(counted!.v2), newer: Number(counted!.newer) },
          keysPerSecond: tally.refreshed / (elapsedMillis / 1_000),
          elapsedMillis,
          lagMillis: {
            p50: quantile(tally.lags, 0.5),
            p90: quantile(tally.lags, 0.9),
            p99: quantile(tally.lags, 0.99),
            max: quantile(tally.lags, 1)
          },
          seedMillis: Math.round(seedMillis),
          startedBeforeFirstDueMillis
        } satisfies Outcome
      }).pipe(Effect.scoped)

    // The claim's plan, on the seeded table with half of the keys due.
    const planned: Seed = { n, due: n, firstDue: Date.now(), windowMillis: burstWindowMillis }
    lastSeedMillis = yield* reseed(planned)
    yield* check(planned)
    const plan = yield* Effect.orDie(explainClaim(admin, table, planned))
    if (!options.quick) {
      process.stdout.write(
        `  the claim of ${upkeepOptions.batchSize} keys, ${
          n.toLocaleString("en")
        } keys, half of them due (EXPLAIN ANALYZE, rolled back):\n`
      )
      for (const line of plan) process.stdout.write(`    ${line}\n`)
    }

    const one = yield* phase(1, n, burstWindowMillis)
    const four = yield* phase(fleet, n, burstWindowMillis)
    // Steady: keys come due at half the rate the fleet refreshed them in the burst.
    const steadyRate = Math.max(10, Math.round(four.keysPerSecond / 2))
    const steadyKeys = Math.min(n, Math.round((steadyRate * steadyMillis) / 1_000))
    const steady = yield* phase(fleet, steadyKeys, steadyMillis)
    const outcomes = [one, four, steady]

    const exactlyOnce = (outcome: Outcome) =>
      outcome.done && outcome.maxRefreshesPerKey === 1 && outcome.versions.v2 === outcome.seed.due &&
      outcome.versions.v1 === n - outcome.seed.due && outcome.versions.newer === 0
    const claimsOf = (outcome: Outcome) => outcome.claims.reduce((sum, claims) => sum + claims, 0)
    const summary = (outcome: Outcome) => ({
      instances: outcome.instances,
      keys: n,
      keysDue: outcome.seed.due,
      windowMillis: outcome.seed.windowMillis,
      done: outcome.done,
      keysRefreshed: outcome.keysRefreshed,
      maxRefreshesPerKey: outcome.maxRefreshesPerKey,
      storeVersions: outcome.versions,
      claimsPerInstance: outcome.claims,
      refreshedPerInstance: outcome.refreshedPerInstance,
      failedEvents: outcome.failedEvents,
      reconnectEvents: outcome.reconnectEvents,
      digime: outcome.digime,
      keysPerSecond: outcome.keysPerSecond,
      elapsedMillis: outcome.elapsedMillis,
      lagMillis: outcome.lagMillis,
      seedMillis: outcome.seedMillis,
      startedBeforeFirstDueMillis: outcome.startedBeforeFirstDueMillis
    })
    const settings = {
      ...upkeepOptions,
      refreshLeadTimeMillis: leadMillis,
      digime: "a counting stub with strict rotation: no HTTP, no signature, no verification"
    }
    const runs = { settings, single: summary(one), fleet: summary(four), steady: summary(steady) }

    options.report.record({
      section,
      name: "refreshes per key and generation (every key due refreshed)",
      value: Math.max(...outcomes.map((outcome) => outcome.maxRefreshesPerKey)),
      unit: "max per key",
      target: "exactly 1 for every key due, in every run",
      pass: outcomes.every(exactlyOnce),
      details: runs
    })
    const replays = outcomes.reduce((sum, outcome) => sum + outcome.digime.replays, 0)
    options.report.record({
      section,
      name: "replays",
      value: replays,
      unit: "replays",
      target: "0",
      pass: replays === 0 && outcomes.every((outcome) => outcome.digime.unknown === 0),
      details: { single: one.digime, fleet: four.digime, steady: steady.digime }
    })
    options.report.record({
      section,
      name: `keys claimed by ${fleet} instances together, ${n} keys due`,
      value: claimsOf(four),
      unit: "claims",
      floor: n,
      floorName: "keys due",
      ratio: claimsOf(four) / n,
      target: "1.00×: no key claimed twice",
      pass: claimsOf(four) === n && claimsOf(steady) === steady.seed.due,
      details: {
        claimsPerInstance: four.claims,
        steadyClaimsPerInstance: steady.claims,
        steadyKeysDue: steady.seed.due,
        failedEvents: four.failedEvents + steady.failedEvents
      }
    })
    options.report.record({
      section,
      name: `throughput, 1 instance, ${n} keys due within ${burstWindowMillis / 1_000} s`,
      value: one.keysPerSecond,
      unit: "keys/s",
      details: summary(one)
    })
    options.report.record({
      section,
      name: `throughput, ${fleet} instances in one process (scaling ratio against 1)`,
      value: four.keysPerSecond,
      unit: "keys/s",
      floor: one.keysPerSecond,
      floorName: "keys/s 1 instance",
      ratio: four.keysPerSecond / one.keysPerSecond,
      details: summary(four)
    })
    for (const [q, value] of [["p50", steady.lagMillis.p50], ["p99", steady.lagMillis.p99]] as const) {
      options.report.record({
        section,
        name: `lag behind the due time, ${q} (${fleet} instances, steady load)`,
        value,
        unit: "ms",
        details: {
          keysDuePerSecond: steadyRate,
          ...summary(steady),
          burstLagMillis: four.lagMillis,
          singleBurstLagMillis: one.lagMillis
        }
      })
    }
    const executionMillis = Number(/Execution Time: ([\d.]+) ms/.exec(plan.join("\n"))?.[1] ?? Number.NaN)
    options.report.record({
      section,
      name: `one claim of ${upkeepOptions.batchSize} keys, ${n} keys, half of them due (EXPLAIN ANALYZE)`,
      value: executionMillis,
      unit: "ms",
      details: { keys: n, keysDue: n / 2, limit: upkeepOptions.batchSize, plan }
    })
  }).pipe(Effect.scoped)
