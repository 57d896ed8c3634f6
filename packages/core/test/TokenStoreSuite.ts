/**
 * The contract every `TokenStore` implementation must keep. Run it with `suite(name, layer)`; the
 * memory store runs it here, the SQL stores in @digime-effect/node.
 */
import { TokenKey, TokenStore, UserAccessToken } from "@digime-effect/core"
import { assert, describe, it } from "@effect/vitest"
import type { Layer } from "effect"
import { DateTime, Effect, Option, Redacted } from "effect"

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
