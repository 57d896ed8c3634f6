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

    it.effect("withLock runs one holder at a time per key", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const key = fresh()
        let inside = 0
        let maxInside = 0
        // Each holder does store round trips while inside: without the lock, others would enter.
        const holder = store.withLock(
          key,
          Effect.gen(function*() {
            inside++
            maxInside = Math.max(maxInside, inside)
            for (let i = 0; i < 3; i++) {
              yield* store.get(key)
              yield* Effect.yieldNow()
            }
            inside--
          })
        )
        yield* Effect.all([holder, holder, holder, holder], { concurrency: "unbounded" })
        assert.strictEqual(maxInside, 1)
        assert.strictEqual(inside, 0)
      })))

    it.effect("withLock does not block other keys", () =>
      run(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const a = fresh()
        const b = fresh()
        const result = yield* store.withLock(a, store.withLock(b, Effect.succeed("both held")))
        assert.strictEqual(result, "both held")
      })))
  })
