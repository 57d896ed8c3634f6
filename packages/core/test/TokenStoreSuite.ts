/**
 * The contract every `TokenStore` implementation must keep. Run it with `suite(name, layer)`; the
 * memory store runs it here, the SQL stores in @digime-effect/node.
 */
import { TokenKey, TokenStore, UserAccessToken } from "@digime-effect/core"
import { assert, describe, it } from "@effect/vitest"
import type { Layer } from "effect"
import { Chunk, DateTime, Effect, Option, Redacted, Stream } from "effect"

export const token = (
  access: string,
  refresh: string,
  expiresAtSeconds = 2_000_000_000
): UserAccessToken.UserAccessToken =>
  new UserAccessToken.UserAccessToken({
    accessToken: new UserAccessToken.Token({
      value: Redacted.make(access),
      expiresAt: DateTime.unsafeMake(expiresAtSeconds * 1000)
    }),
    refreshToken: new UserAccessToken.Token({
      value: Redacted.make(refresh),
      expiresAt: DateTime.unsafeMake((expiresAtSeconds + 86_400) * 1000)
    }),
    digimeUserId: "digime-user",
    consentId: "consent-1"
  })

const sameToken = (a: UserAccessToken.UserAccessToken, b: UserAccessToken.UserAccessToken): boolean =>
  Redacted.value(a.accessToken.value) === Redacted.value(b.accessToken.value) &&
  Redacted.value(a.refreshToken.value) === Redacted.value(b.refreshToken.value) &&
  DateTime.toEpochMillis(a.accessToken.expiresAt) === DateTime.toEpochMillis(b.accessToken.expiresAt) &&
  DateTime.toEpochMillis(a.refreshToken.expiresAt) === DateTime.toEpochMillis(b.refreshToken.expiresAt) &&
  a.digimeUserId === b.digimeUserId && a.consentId === b.consentId

export const suite = <E>(name: string, layer: Layer.Layer<TokenStore.TokenStore, E>) =>
  describe(`TokenStore contract: ${name}`, () => {
    const run = <A, E2>(effect: Effect.Effect<A, E2, TokenStore.TokenStore>) =>
      Effect.flatMap(
        Effect.sync(() => crypto.randomUUID()),
        (suffix) => effect.pipe(Effect.provide(layer), Effect.annotateLogs("suite", suffix))
      )
    const fresh = () => TokenKey.make(`user-${crypto.randomUUID()}`, "contract-1")

    it.effect("get is None for an unknown key", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        assert.isTrue(Option.isNone(yield* store.get(fresh())))
      })))

    it.effect("set then get round-trips every field", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        const written = yield* store.set(key, token("a1", "r1"))
        const read = yield* store.get(key)
        assert.isTrue(Option.isSome(read))
        const value = Option.getOrThrow(read)
        assert.strictEqual(value.version, written.version)
        assert.isTrue(sameToken(value.token, token("a1", "r1")))
      })))

    it.effect("keys differ by user and by contract", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const userId = `user-${crypto.randomUUID()}`
        yield* store.set(TokenKey.make(userId, "contract-1"), token("a1", "r1"))
        assert.isTrue(Option.isNone(yield* store.get(TokenKey.make(userId, "contract-2"))))
        assert.isTrue(Option.isNone(yield* store.get(TokenKey.make(`${userId}x`, "contract-1"))))
      })))

    it.effect("compareAndSet writes only over the expected version", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        const v1 = yield* store.set(key, token("a1", "r1"))
        const v2 = yield* store.compareAndSet(key, v1.version, token("a2", "r2"))
        assert.isTrue(Option.isSome(v2))
        assert.isAbove(Option.getOrThrow(v2).version, v1.version)
        // A writer still holding v1 loses, and the newer token stays.
        const stale = yield* store.compareAndSet(key, v1.version, token("old", "old"))
        assert.isTrue(Option.isNone(stale))
        const read = Option.getOrThrow(yield* store.get(key))
        assert.isTrue(sameToken(read.token, token("a2", "r2")))
      })))

    it.effect("compareAndSet on a missing key writes nothing", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        assert.isTrue(Option.isNone(yield* store.compareAndSet(key, 1, token("a", "r"))))
        assert.isTrue(Option.isNone(yield* store.get(key)))
      })))

    it.effect("delete removes the token, and a later CAS on the old version fails", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        const v1 = yield* store.set(key, token("a1", "r1"))
        yield* store.delete(key)
        assert.isTrue(Option.isNone(yield* store.get(key)))
        assert.isTrue(Option.isNone(yield* store.compareAndSet(key, v1.version, token("a2", "r2"))))
        yield* store.delete(key)
      })))

    it.effect("versions grow across delete and set", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        const v1 = yield* store.set(key, token("a1", "r1"))
        yield* store.delete(key)
        const v2 = yield* store.set(key, token("a2", "r2"))
        assert.isAbove(v2.version, v1.version)
      })))

    const leaseOf = (holder: string, version: number, until = 2_000_000_000_000): TokenStore.Lease => ({
      holder,
      version,
      until
    })

    it.effect("acquireLease: one holder per version, however many ask at once; get shows the lease", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        const v1 = yield* store.set(key, token("a1", "r1"))
        const taken = yield* Effect.all(
          ["p1", "p2", "p3", "p4"].map((holder) => store.acquireLease(key, leaseOf(holder, v1.version))),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(taken.filter((won) => won).length, 1)
        const read = Option.getOrThrow(yield* store.get(key))
        assert.strictEqual(read.lease?.version, v1.version)
        assert.strictEqual(read.lease?.holder, ["p1", "p2", "p3", "p4"][taken.indexOf(true)])
        assert.strictEqual(read.lease?.until, 2_000_000_000_000)
      })))

    it.effect("acquireLease refuses another version than the stored one, and a missing key", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        assert.isFalse(yield* store.acquireLease(key, leaseOf("p1", 1)))
        const v1 = yield* store.set(key, token("a1", "r1"))
        assert.isFalse(yield* store.acquireLease(key, leaseOf("p1", v1.version + 1)))
        assert.isUndefined(Option.getOrThrow(yield* store.get(key)).lease)
      })))

    it.effect("compareAndSet ends the lease in the same write; the new version can be leased", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        const v1 = yield* store.set(key, token("a1", "r1"))
        assert.isTrue(yield* store.acquireLease(key, leaseOf("p1", v1.version)))
        const v2 = Option.getOrThrow(yield* store.compareAndSet(key, v1.version, token("a2", "r2")))
        assert.isUndefined(Option.getOrThrow(yield* store.get(key)).lease)
        assert.isTrue(yield* store.acquireLease(key, leaseOf("p2", v2.version)))
      })))

    it.effect("a released lease can be taken again; an abandoned one never, until a new token is written", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        const v1 = yield* store.set(key, token("a1", "r1"))
        assert.isTrue(yield* store.acquireLease(key, leaseOf("p1", v1.version)))
        yield* store.endLease(key, leaseOf("p1", v1.version), "Released")
        assert.isUndefined(Option.getOrThrow(yield* store.get(key)).lease)
        assert.isTrue(yield* store.acquireLease(key, leaseOf("p2", v1.version)))
        yield* store.endLease(key, leaseOf("p2", v1.version), "Abandoned")
        const abandoned = Option.getOrThrow(yield* store.get(key)).lease
        assert.deepStrictEqual(abandoned, { holder: "p2", version: v1.version, until: 0 })
        assert.isFalse(yield* store.acquireLease(key, leaseOf("p3", v1.version)))
        // A new authorization writes over it.
        const v2 = yield* store.set(key, token("a2", "r2"))
        assert.isUndefined(Option.getOrThrow(yield* store.get(key)).lease)
        assert.isTrue(yield* store.acquireLease(key, leaseOf("p3", v2.version)))
      })))

    it.effect("endLease leaves another holder's lease, and the token, as they were", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        const v1 = yield* store.set(key, token("a1", "r1"))
        assert.isTrue(yield* store.acquireLease(key, leaseOf("p1", v1.version)))
        yield* store.endLease(key, leaseOf("p2", v1.version), "Released")
        yield* store.endLease(key, leaseOf("p2", v1.version), "Abandoned")
        const read = Option.getOrThrow(yield* store.get(key))
        assert.deepStrictEqual(read.lease, leaseOf("p1", v1.version))
        assert.strictEqual(read.version, v1.version)
        assert.isTrue(sameToken(read.token, token("a1", "r1")))
      })))

    it.effect("endLease ends only the very lease: another until is another lease, and Released never reopens an abandoned one", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        const v1 = yield* store.set(key, token("a1", "r1"))
        const lease = leaseOf("p1", v1.version, 1_900_000_000_000)
        assert.isTrue(yield* store.acquireLease(key, lease))
        yield* store.endLease(key, { ...lease, until: lease.until + 1 }, "Released")
        assert.deepStrictEqual(Option.getOrThrow(yield* store.get(key)).lease, lease)
        yield* store.endLease(key, lease, "Abandoned")
        yield* store.endLease(key, lease, "Released")
        assert.deepStrictEqual(Option.getOrThrow(yield* store.get(key)).lease, { ...lease, until: 0 })
        assert.isFalse(yield* store.acquireLease(key, leaseOf("p2", v1.version)))
      })))

    // The optional `acquireLeaseAndGet`: checked when the store has it.
    const withLeaseAndGet = <A, E2>(
      test: (
        store: TokenStore.Service,
        acquireLeaseAndGet: NonNullable<TokenStore.Service["acquireLeaseAndGet"]>
      ) => Effect.Effect<A, E2>
    ) =>
      run(Effect.flatMap(TokenStore.TokenStore, (store) => {
        const acquireLeaseAndGet = store.acquireLeaseAndGet
        return acquireLeaseAndGet === undefined ? Effect.void : test(store, acquireLeaseAndGet)
      }))

    it.effect("acquireLeaseAndGet takes the lease as acquireLease does and answers the leased token with it", () =>
      withLeaseAndGet((store, acquireLeaseAndGet) =>
        Effect.gen(function*() {
          const key = fresh()
          const v1 = yield* store.set(key, token("a1", "r1"))
          const taken = yield* acquireLeaseAndGet(key, leaseOf("p1", v1.version))
          assert.isTrue(taken.acquired)
          const current = Option.getOrThrow(taken.current)
          assert.strictEqual(current.version, v1.version)
          assert.deepStrictEqual(current.lease, leaseOf("p1", v1.version))
          assert.isTrue(sameToken(current.token, token("a1", "r1")))
          assert.deepStrictEqual(Option.getOrThrow(yield* store.get(key)).lease, leaseOf("p1", v1.version))
          // The version is leased now: refused to anyone, the row answered as it is.
          const again = yield* acquireLeaseAndGet(key, leaseOf("p2", v1.version))
          assert.isFalse(again.acquired)
          assert.deepStrictEqual(Option.getOrThrow(again.current).lease, leaseOf("p1", v1.version))
          assert.isFalse(yield* store.acquireLease(key, leaseOf("p3", v1.version)))
          // The compare-and-set ends it; the new version can be leased.
          const v2 = Option.getOrThrow(yield* store.compareAndSet(key, v1.version, token("a2", "r2")))
          const next = yield* acquireLeaseAndGet(key, leaseOf("p2", v2.version))
          assert.isTrue(next.acquired)
          assert.isTrue(sameToken(Option.getOrThrow(next.current).token, token("a2", "r2")))
        })
      ))

    it.effect("acquireLeaseAndGet refuses another version, a missing key, an abandoned lease and a marked version", () =>
      withLeaseAndGet((store, acquireLeaseAndGet) =>
        Effect.gen(function*() {
          const key = fresh()
          const missing = yield* acquireLeaseAndGet(key, leaseOf("p1", 1))
          assert.isFalse(missing.acquired)
          assert.isTrue(Option.isNone(missing.current))
          const v1 = yield* store.set(key, token("a1", "r1"))
          // Another version than the stored one: refused, the stored token answered without a lease.
          const older = yield* acquireLeaseAndGet(key, leaseOf("p1", v1.version + 1))
          assert.isFalse(older.acquired)
          assert.strictEqual(Option.getOrThrow(older.current).version, v1.version)
          assert.isUndefined(Option.getOrThrow(older.current).lease)
          assert.isUndefined(Option.getOrThrow(yield* store.get(key)).lease)
          // An abandoned lease is never taken again.
          assert.isTrue(yield* store.acquireLease(key, leaseOf("p1", v1.version)))
          yield* store.endLease(key, leaseOf("p1", v1.version), "Abandoned")
          const abandoned = yield* acquireLeaseAndGet(key, leaseOf("p2", v1.version))
          assert.isFalse(abandoned.acquired)
          assert.strictEqual(Option.getOrThrow(abandoned.current).lease?.until, 0)
          // A version marked "needs reconnect" is not leased; the mark is answered.
          const v2 = yield* store.set(key, token("a2", "r2"))
          const mark = { reason: "RefreshTokenInvalid", version: v2.version, at: 1_000 } as const
          assert.isTrue(yield* store.markReconnect(key, mark))
          const marked = yield* acquireLeaseAndGet(key, leaseOf("p2", v2.version))
          assert.isFalse(marked.acquired)
          assert.deepStrictEqual(Option.getOrThrow(marked.current).reconnect, mark)
          assert.isUndefined(Option.getOrThrow(yield* store.get(key)).lease)
        })
      ))

    it.effect("acquireLeaseAndGet: one holder per version, against itself and acquireLease, however many ask at once", () =>
      withLeaseAndGet((store, acquireLeaseAndGet) =>
        Effect.gen(function*() {
          const key = fresh()
          const v1 = yield* store.set(key, token("a1", "r1"))
          const taken = yield* Effect.all(
            ["p1", "p2", "p3", "p4", "p5", "p6"].map((holder, i) =>
              i % 2 === 0
                ? Effect.map(acquireLeaseAndGet(key, leaseOf(holder, v1.version)), (answer) => answer.acquired)
                : store.acquireLease(key, leaseOf(holder, v1.version))
            ),
            { concurrency: "unbounded" }
          )
          assert.strictEqual(taken.filter((won) => won).length, 1)
          const holder = ["p1", "p2", "p3", "p4", "p5", "p6"][taken.indexOf(true)]
          assert.strictEqual(Option.getOrThrow(yield* store.get(key)).lease?.holder, holder)
        })
      ))

    it.effect("leases of different keys are independent", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const a = fresh()
        const b = fresh()
        const va = yield* store.set(a, token("a1", "r1"))
        const vb = yield* store.set(b, token("b1", "r1"))
        assert.isTrue(yield* store.acquireLease(a, leaseOf("p1", va.version)))
        assert.isTrue(yield* store.acquireLease(b, leaseOf("p1", vb.version)))
      })))
  })

// ---------------------------------------------------------------------------------------------
// Listings by expiry, claims and "needs reconnect". Stores shared by a whole test file (the SQL
// tables) hold the keys of earlier tests: each test works in its own window of expiries, far
// before any other test's, and deletes its keys when it ends.
// ---------------------------------------------------------------------------------------------

let windows = 0
const nextWindow = () => 1_000_000_000_000 + ++windows * 100_000_000

export const tokenExpiring = (accessAt: number, refreshAt: number): UserAccessToken.UserAccessToken =>
  new UserAccessToken.UserAccessToken({
    accessToken: new UserAccessToken.Token({ value: Redacted.make("a"), expiresAt: DateTime.unsafeMake(accessAt) }),
    refreshToken: new UserAccessToken.Token({ value: Redacted.make("r"), expiresAt: DateTime.unsafeMake(refreshAt) })
  })

export const dueSuite = <E>(name: string, layer: Layer.Layer<TokenStore.TokenStore, E>) =>
  describe(`TokenStore contract, due keys: ${name}`, () => {
    const fresh = () => TokenKey.make(`user-${crypto.randomUUID()}`, "contract-1")
    // Runs `test` with a window of expiries and keys that are deleted when it ends.
    const run = <A, E2>(
      test: (base: number, make: () => TokenKey.TokenKey) => Effect.Effect<A, E2, TokenStore.TokenStore>
    ) =>
      Effect.gen(function*() {
        const keys: Array<TokenKey.TokenKey> = []
        const store = yield* TokenStore.TokenStore
        return yield* test(nextWindow(), () => {
          const key = fresh()
          keys.push(key)
          return key
        }).pipe(Effect.ensuring(Effect.orDie(Effect.forEach(keys, (key) => store.delete(key), { discard: true }))))
      }).pipe(Effect.provide(layer))

    it.effect("listDue: keys expiring before a time, by expiry then id, in pages; the bound is exclusive", () =>
      run((base, make) =>
        Effect.gen(function*() {
          const store = yield* TokenStore.TokenStore
          const keys = [make(), make(), make(), make()]
          // Access expiries base+30, base+10, base+20, base+40; refresh expiries in reverse order.
          const access = [30, 10, 20, 40]
          for (const [i, key] of keys.entries()) {
            yield* store.set(key, tokenExpiring(base + access[i]!, base + 1000 - access[i]!))
          }
          const first = yield* store.listDue({ expiry: "AccessToken", before: base + 40, limit: 2 })
          assert.deepStrictEqual(first.map((due) => due.accessExpiresAt), [base + 10, base + 20])
          assert.strictEqual(first[0]!.id, TokenKey.toId(keys[1]!))
          assert.strictEqual(first[0]!.key.userId, keys[1]!.userId)
          assert.strictEqual(first[0]!.refreshExpiresAt, base + 990)
          const last = first[1]!
          const second = yield* store.listDue({
            expiry: "AccessToken",
            before: base + 40,
            after: { at: last.accessExpiresAt, id: last.id },
            limit: 2
          })
          // base+40 is not before base+40.
          assert.deepStrictEqual(second.map((due) => due.accessExpiresAt), [base + 30])
          const byRefresh = yield* store.listDue({ expiry: "RefreshToken", before: base + 975, limit: 10 })
          assert.deepStrictEqual(byRefresh.map((due) => due.refreshExpiresAt), [base + 960, base + 970])
        })
      ))

    it.effect("listDue: keys with the same expiry page by id, none twice, none left out", () =>
      run((base, make) =>
        Effect.gen(function*() {
          const store = yield* TokenStore.TokenStore
          const keys = Array.from({ length: 5 }, make)
          for (const key of keys) yield* store.set(key, tokenExpiring(base + 5, base + 500))
          const seen: Array<string> = []
          let after: { at: number; id: string } | undefined = undefined
          for (let page = 0; page < 5; page++) {
            const found: ReadonlyArray<TokenStore.Due> = yield* store.listDue({
              expiry: "AccessToken",
              before: base + 6,
              after,
              limit: 2
            })
            for (const due of found) seen.push(due.id)
            if (found.length < 2) break
            after = { at: found[1]!.accessExpiresAt, id: found[1]!.id }
          }
          assert.deepStrictEqual(seen, keys.map(TokenKey.toId).sort())
        })
      ))

    it.effect("streamDue reads every page; a bad page size is InvalidOptions", () =>
      run((base, make) =>
        Effect.gen(function*() {
          const store = yield* TokenStore.TokenStore
          const keys = Array.from({ length: 5 }, make)
          for (const [i, key] of keys.entries()) yield* store.set(key, tokenExpiring(base + i, base + 500))
          const all = yield* Stream.runCollect(
            TokenStore.streamDue({ expiry: "AccessToken", before: base + 5, pageSize: 2 })
          )
          assert.deepStrictEqual(Chunk.toReadonlyArray(all).map((due) => due.id), keys.map(TokenKey.toId))
          const error = yield* Effect.flip(
            Stream.runDrain(TokenStore.streamDue({ expiry: "AccessToken", before: base, pageSize: 0 }))
          )
          assert.strictEqual(error._tag, "InvalidOptions")
          void store
        })
      ))

    it.effect("claimDue: oldest due first, each key to one claim until the claim ends", () =>
      run((base, make) =>
        Effect.gen(function*() {
          const store = yield* TokenStore.TokenStore
          const keys = [make(), make(), make()]
          for (const [i, key] of keys.entries()) yield* store.set(key, tokenExpiring(base + 10 * (3 - i), base + 900))
          const first = yield* store.claimDue({
            expiry: "AccessToken",
            before: base + 100,
            until: base + 200,
            limit: 2
          })
          assert.deepStrictEqual(first.map((due) => due.id), [TokenKey.toId(keys[2]!), TokenKey.toId(keys[1]!)])
          // The listing by expiry is not moved by a claim.
          const listed = yield* store.listDue({ expiry: "AccessToken", before: base + 100, limit: 10 })
          assert.strictEqual(listed.length, 3)
          const second = yield* store.claimDue({
            expiry: "AccessToken",
            before: base + 100,
            until: base + 200,
            limit: 10
          })
          assert.deepStrictEqual(second.map((due) => due.id), [TokenKey.toId(keys[0]!)])
          assert.deepStrictEqual(
            yield* store.claimDue({ expiry: "AccessToken", before: base + 100, until: base + 200, limit: 10 }),
            []
          )
          // A claim of the other expiry is not kept off.
          const refresh = yield* store.claimDue({
            expiry: "RefreshToken",
            before: base + 901,
            until: base + 2000,
            limit: 10
          })
          assert.strictEqual(refresh.length, 3)
          // Once the claims end, the keys are due again.
          const again = yield* store.claimDue({
            expiry: "AccessToken",
            before: base + 201,
            until: base + 300,
            limit: 10
          })
          assert.strictEqual(again.length, 3)
        })
      ))

    it.effect("claimDue: a new token makes its expiries the due times again", () =>
      run((base, make) =>
        Effect.gen(function*() {
          const store = yield* TokenStore.TokenStore
          const key = make()
          const v1 = yield* store.set(key, tokenExpiring(base + 10, base + 900))
          assert.strictEqual(
            (yield* store.claimDue({ expiry: "AccessToken", before: base + 50, until: base + 5000, limit: 5 })).length,
            1
          )
          yield* store.compareAndSet(key, v1.version, tokenExpiring(base + 20, base + 950))
          const after = yield* store.claimDue({
            expiry: "AccessToken",
            before: base + 50,
            until: base + 5000,
            limit: 5
          })
          assert.deepStrictEqual(after.map((due) => [due.accessExpiresAt, due.refreshExpiresAt]), [[
            base + 20,
            base + 950
          ]])
          assert.strictEqual(after[0]!.version, v1.version + 1)
        })
      ))

    it.effect("claimDue: of many claims at once, each key goes to one", () =>
      run((base, make) =>
        Effect.gen(function*() {
          const store = yield* TokenStore.TokenStore
          const keys = Array.from({ length: 20 }, make)
          for (const [i, key] of keys.entries()) yield* store.set(key, tokenExpiring(base + i, base + 900))
          const claims = yield* Effect.all(
            Array.from(
              { length: 8 },
              () => store.claimDue({ expiry: "AccessToken", before: base + 100, until: base + 5000, limit: 4 })
            ),
            { concurrency: "unbounded" }
          )
          const ids = claims.flat().map((due) => due.id)
          assert.strictEqual(new Set(ids).size, ids.length)
          assert.strictEqual(ids.length, 20)
        })
      ))

    it.effect("markReconnect marks only the stored version; marked keys are listed, neither due nor claimed; a new token ends the mark", () =>
      run((base, make) =>
        Effect.gen(function*() {
          const store = yield* TokenStore.TokenStore
          const [a, b] = [make(), make()]
          const va = yield* store.set(a, tokenExpiring(base + 10, base + 900))
          const vb = yield* store.set(b, tokenExpiring(base + 20, base + 900))
          const reconnect = { reason: "RefreshTokenInvalid", version: va.version, at: base } as const
          assert.isFalse(yield* store.markReconnect(a, { ...reconnect, version: va.version + 1_000 }))
          assert.isTrue(yield* store.markReconnect(a, reconnect))
          assert.deepStrictEqual(Option.getOrThrow(yield* store.get(a)).reconnect, reconnect)
          assert.isUndefined(Option.getOrThrow(yield* store.get(b)).reconnect)
          const listed = yield* store.listReconnect({ limit: 10_000 })
          const mine = listed.filter((entry) => entry.id === TokenKey.toId(a) || entry.id === TokenKey.toId(b))
          assert.deepStrictEqual(mine.map((entry) => [entry.id, entry.key.userId, entry.reconnect]), [[
            TokenKey.toId(a),
            a.userId,
            reconnect
          ]])
          const due = yield* store.listDue({ expiry: "AccessToken", before: base + 100, limit: 10 })
          assert.deepStrictEqual(due.map((entry) => entry.version), [vb.version])
          const claimed = yield* store.claimDue({
            expiry: "RefreshToken",
            before: base + 1000,
            until: base + 2000,
            limit: 10
          })
          assert.deepStrictEqual(claimed.map((entry) => entry.id), [TokenKey.toId(b)])
          // The user connected again.
          const va2 = yield* store.set(a, tokenExpiring(base + 30, base + 900))
          assert.isUndefined(Option.getOrThrow(yield* store.get(a)).reconnect)
          const after = yield* store.listReconnect({ limit: 10_000 })
          assert.isFalse(after.some((entry) => entry.id === TokenKey.toId(a)))
          const dueAgain = yield* store.claimDue({
            expiry: "AccessToken",
            before: base + 100,
            until: base + 2000,
            limit: 10
          })
          assert.deepStrictEqual(dueAgain.map((entry) => entry.version), [vb.version, va2.version])
        })
      ))

    it.effect("listReconnect pages by id; streamReconnect reads every page", () =>
      run((base, make) =>
        Effect.gen(function*() {
          const store = yield* TokenStore.TokenStore
          const keys = Array.from({ length: 5 }, make)
          for (const key of keys) {
            const written = yield* store.set(key, tokenExpiring(base + 10, base + 900))
            yield* store.markReconnect(key, { reason: "RefreshTokenExpired", version: written.version, at: base })
          }
          const mine = new Set(keys.map(TokenKey.toId))
          const streamed = yield* Stream.runCollect(TokenStore.streamReconnect({ pageSize: 2 }))
          const ids = Chunk.toReadonlyArray(streamed).map((entry) => entry.id)
          assert.deepStrictEqual(ids.filter((id) => mine.has(id)), [...mine].sort())
          assert.deepStrictEqual(ids, [...ids].sort())
          const page = yield* store.listReconnect({ after: [...mine].sort()[2], limit: 10_000 })
          assert.deepStrictEqual(page.map((entry) => entry.id).filter((id) => mine.has(id)), [...mine].sort().slice(3))
        })
      ))

    it.effect("delete takes the key out of listings and claims", () =>
      run((base, make) =>
        Effect.gen(function*() {
          const store = yield* TokenStore.TokenStore
          const key = make()
          const v1 = yield* store.set(key, tokenExpiring(base + 10, base + 900))
          yield* store.markReconnect(key, { reason: "RefreshTokenExpired", version: v1.version, at: base })
          yield* store.delete(key)
          assert.deepStrictEqual(yield* store.listDue({ expiry: "AccessToken", before: base + 100, limit: 10 }), [])
          assert.isFalse((yield* store.listReconnect({ limit: 10_000 })).some((e) => e.id === TokenKey.toId(key)))
          yield* store.set(key, tokenExpiring(base + 10, base + 900))
          yield* store.delete(key)
          assert.deepStrictEqual(
            yield* store.claimDue({ expiry: "AccessToken", before: base + 100, until: base + 200, limit: 10 }),
            []
          )
        })
      ))
  })

export const markOnceSuite = <E>(name: string, layer: Layer.Layer<TokenStore.TokenStore, E>) =>
  describe(`TokenStore contract, marks: ${name}`, () => {
    it.effect("markReconnect answers true once per version: of several that find the same, one marks", () =>
      Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = TokenKey.make(`user-${crypto.randomUUID()}`, "contract-1")
        const v1 = yield* store.set(key, token("a1", "r1"))
        const answers = yield* Effect.all(
          ["RefreshTokenInvalid", "RefreshOutcomeUnknown", "InvalidAccessToken"].map((reason) =>
            store.markReconnect(key, { reason: reason as TokenStore.ReconnectReason, version: v1.version, at: 1 })
          ),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(answers.filter((marked) => marked).length, 1)
        // The first mark stays.
        const reason = Option.getOrThrow(yield* store.get(key)).reconnect?.reason
        assert.strictEqual(
          reason,
          ["RefreshTokenInvalid", "RefreshOutcomeUnknown", "InvalidAccessToken"][answers.indexOf(true)]
        )
        yield* store.delete(key)
      }).pipe(Effect.provide(layer)))
  })
