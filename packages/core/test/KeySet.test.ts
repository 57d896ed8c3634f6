/**
 * `KeySet`: the download of digi.me's key set (allow-listed, no redirects, size-capped, typed
 * errors) and its processor without HTTP.
 */
import { DigimeConfig, KeySet, Verifier } from "@digime-effect/core"
import { FetchHttpClient, HttpClient, HttpClientRequest, HttpClientResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Encoding, Layer, TestClock } from "effect"
import { joinAdvancing, signingPair, signingPublicPem, testContract } from "./fixtures.js"

const jwksUrl = "https://api.digi.me/v1.7/jwks/oauth"

const answer = (status: number, body: BodyInit | null, headers: Record<string, string> = {}) =>
  HttpClientResponse.fromWeb(HttpClientRequest.get(jwksUrl), new Response(body, { status, headers }))

// A 2048-bit RSA public key in both forms a key set may use.
const pair = signingPair
const publicPem = signingPublicPem
const jwk = await globalThis.crypto.subtle.exportKey("jwk", pair.publicKey)

describe("KeySet.processJwksResponse", () => {
  it.effect("keys in PEM and JWK form are imported by kid; entries that are not RSA public keys are left out", () =>
    Effect.gen(function*() {
      const keys = yield* KeySet.processJwksResponse(answer(
        200,
        JSON.stringify({
          keys: [
            { kid: "pem", pem: publicPem },
            { kid: "jwk", kty: "RSA", n: jwk.n, e: jwk.e },
            { kid: "junk", pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" },
            { kid: "short", kty: "RSA", n: "AQAB", e: "AQAB" },
            "not an entry",
            { pem: publicPem }
          ]
        })
      ))
      assert.deepStrictEqual([...keys.keys()].sort(), ["jwk", "pem"])
    }))

  it.effect("a redirect is refused, not followed: KeySetError (Redirect)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(KeySet.processJwksResponse(answer(302, null, { location: "https://evil/" })))
      assert.strictEqual(error._tag, "KeySetError")
      assert.strictEqual(error.reason, "Redirect")
      assert.strictEqual(error.status, 302)
    }))

  it.effect("an error status is KeySetError (Status) with the status", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(KeySet.processJwksResponse(answer(503, "down")))
      assert.strictEqual(error.reason, "Status")
      assert.strictEqual(error.status, 503)
    }))

  it.effect("a body over the limit is refused: announced by its length, or streamed without one", () =>
    Effect.gen(function*() {
      const announced = yield* Effect.flip(KeySet.processJwksResponse(
        answer(200, "{}", { "content-length": String(KeySet.maxBytes + 1) })
      ))
      assert.strictEqual(announced.reason, "TooLarge")
      // A body that never ends: reading stops at the limit.
      let chunks = 0
      const endless = new ReadableStream<Uint8Array>({
        pull: (controller) => {
          chunks++
          controller.enqueue(new Uint8Array(16 * 1024).fill(32))
        }
      })
      const streamed = yield* Effect.flip(KeySet.processJwksResponse(answer(200, endless)))
      assert.strictEqual(streamed.reason, "TooLarge")
      assert.isAtMost(chunks, KeySet.maxBytes / (16 * 1024) + 2)
    }))

  it.effect("a document without a keys array is KeySetError (Malformed)", () =>
    Effect.gen(function*() {
      for (const body of ["not json", "{}", JSON.stringify({ keys: "x" })]) {
        const error = yield* Effect.flip(KeySet.processJwksResponse(answer(200, body)))
        assert.strictEqual(error.reason, "Malformed")
      }
    }))
})

/** `KeySet.layer` on an `HttpClient` answering with `reply`, recording each URL in `seen`. */
const layerWith = (
  reply: (request: HttpClientRequest.HttpClientRequest) => Response,
  seen: Array<string>,
  config: Partial<DigimeConfig.Options> = {}
) =>
  KeySet.layer.pipe(
    Layer.provide(Layer.succeed(
      HttpClient.HttpClient,
      HttpClient.make((request) =>
        Effect.sync(() => {
          seen.push(request.url)
          return HttpClientResponse.fromWeb(request, reply(request))
        })
      )
    )),
    Layer.provide(DigimeConfig.layer({ applicationId: "app", contracts: [testContract.contract], ...config })),
    Layer.orDie
  )

describe("KeySet.make", () => {
  const tokenNaming = (jku: string) =>
    [
      Encoding.encodeBase64Url(JSON.stringify({ alg: "PS512", typ: "JWT", jku, kid: "k-1" })),
      Encoding.encodeBase64Url(JSON.stringify({})),
      "c2ln"
    ].join(".")

  it.effect("a jku off the allow-list is refused without any download", () => {
    const seen: Array<string> = []
    return Effect.gen(function*() {
      const keySet = yield* KeySet.KeySet
      const error = yield* Effect.flip(keySet.verify("test", tokenNaming("https://evil.example/jwks")))
      assert.strictEqual(error.reason, "UntrustedKeySet")
      assert.deepStrictEqual(seen, [])
    }).pipe(Effect.provide(layerWith(() => new Response("{}"), seen)))
  })

  it.effect("a redirect from the key set's URL is one request, then VerificationError (KeySetUnavailable)", () => {
    const seen: Array<string> = []
    return Effect.gen(function*() {
      const keySet = yield* KeySet.KeySet
      const error = yield* Effect.flip(keySet.verify("test", tokenNaming(jwksUrl)))
      assert.strictEqual(error.reason, "KeySetUnavailable")
      assert.deepStrictEqual(seen, [jwksUrl])
    }).pipe(Effect.provide(layerWith(() => new Response(null, { status: 307, headers: { location: "/x" } }), seen)))
  })

  it.effect("a transient status is retried twice; an unknown kid in a good key set is UnknownKey", () => {
    const seen: Array<string> = []
    return Effect.gen(function*() {
      const keySet = yield* KeySet.KeySet
      const fiber = yield* Effect.fork(Effect.flip(keySet.verify("test", tokenNaming(jwksUrl))))
      const error = yield* joinAdvancing(fiber, "10 seconds")
      assert.strictEqual(error.reason, "UnknownKey")
      assert.strictEqual(seen.length, 3)
    }).pipe(Effect.provide(layerWith(
      () =>
        seen.length < 3
          ? new Response("busy", { status: 503 })
          : new Response(JSON.stringify({ keys: [{ kid: "other", pem: publicPem }] }), { status: 200 }),
      seen
    )))
  })

  it.effect("a key set larger than the limit is VerificationError (KeySetUnavailable), not retried", () => {
    const seen: Array<string> = []
    return Effect.gen(function*() {
      const keySet = yield* KeySet.KeySet
      const error = yield* Effect.flip(keySet.verify("test", tokenNaming(jwksUrl)))
      assert.strictEqual(error.reason, "KeySetUnavailable")
      assert.include(error.description, "bytes")
      assert.strictEqual(seen.length, 1)
    }).pipe(Effect.provide(layerWith(
      () => new Response("{}", { status: 200, headers: { "content-length": "999999999" } }),
      seen
    )))
  })
})

describe("KeySet: time", () => {
  const jwksOf = (...kids: Array<string>) => JSON.stringify({ keys: kids.map((kid) => ({ kid, pem: publicPem })) })

  // A token digi.me could have signed with `pair`, its claims relative to the Clock's `now` (s).
  const signedWith = (header: Record<string, unknown>, claims: unknown, tamper = false) =>
    Effect.promise(async () => {
      const input = [
        Encoding.encodeBase64Url(JSON.stringify({ alg: "PS512", typ: "JWT", jku: jwksUrl, kid: "k-1", ...header })),
        Encoding.encodeBase64Url(JSON.stringify(claims))
      ].join(".")
      const signature = await globalThis.crypto.subtle.sign(
        { name: "RSA-PSS", saltLength: 64 },
        pair.privateKey,
        new TextEncoder().encode(input)
      )
      const token = `${input}.${Encoding.encodeBase64Url(new Uint8Array(signature))}`
      return tamper
        ? token.replace(/^([^.]*)\.([^.]*)/, (_, h: string) => `${h}.${Encoding.encodeBase64Url("{}")}`)
        : token
    })

  const signed = (claims: Record<string, number>) => signedWith({}, claims)

  const layerServing = (
    served: { current: string },
    seen: Array<string>,
    config: Partial<DigimeConfig.Options> = {}
  ) => layerWith(() => new Response(served.current, { status: 200 }), seen, config)

  it.effect("a key withdrawn from the key set stops verifying once the cached set is keySetMaxAge old", () => {
    const seen: Array<string> = []
    const served = { current: jwksOf("k-1") }
    return Effect.gen(function*() {
      const keySet = yield* KeySet.KeySet
      const token = yield* signed({ exp: 10 * 24 * 3600 })
      yield* keySet.verify("test", token)
      served.current = jwksOf("k-2") // digi.me withdraws k-1
      yield* TestClock.adjust("59 minutes")
      yield* keySet.verify("test", token) // still within the maximum age: from the cache
      assert.strictEqual(seen.length, 1)
      yield* TestClock.adjust("1 minute")
      const error = yield* Effect.flip(keySet.verify("test", token))
      assert.strictEqual(error.reason, "UnknownKey")
      assert.strictEqual(seen.length, 2)
    }).pipe(Effect.provide(layerServing(served, seen)))
  })

  it.effect("keySetMaxAge is configurable: with 10 minutes, the set is downloaded again after 10 minutes", () => {
    const seen: Array<string> = []
    const served = { current: jwksOf("k-1") }
    return Effect.gen(function*() {
      const keySet = yield* KeySet.KeySet
      const token = yield* signed({ exp: 10 * 24 * 3600 })
      yield* keySet.verify("test", token)
      yield* TestClock.adjust("10 minutes")
      yield* keySet.verify("test", token)
      assert.strictEqual(seen.length, 2)
    }).pipe(Effect.provide(layerServing(served, seen, { keySetMaxAge: "10 minutes" })))
  })

  it.effect("exp and nbf are checked with a clock tolerance of 60 seconds by default", () => {
    const seen: Array<string> = []
    return Effect.gen(function*() {
      const keySet = yield* KeySet.KeySet
      yield* TestClock.setTime(1_000_000_000)
      const now = 1_000_000
      // A digi.me clock 30 s ahead or behind: its tokens verify.
      yield* keySet.verify("test", yield* signed({ nbf: now + 30, iat: now + 30, exp: now + 3600 }))
      yield* keySet.verify("test", yield* signed({ exp: now - 30 }))
      // Beyond the tolerance: refused.
      const expired = yield* Effect.flip(keySet.verify("test", yield* signed({ exp: now - 90 })))
      assert.strictEqual(expired.reason, "Expired")
      const early = yield* Effect.flip(keySet.verify("test", yield* signed({ nbf: now + 90, exp: now + 3600 })))
      assert.strictEqual(early.reason, "InvalidClaims")
    }).pipe(Effect.provide(layerServing({ current: jwksOf("k-1") }, seen)))
  })

  it.effect("clockTolerance 0 refuses a token expired a second ago", () => {
    const seen: Array<string> = []
    return Effect.gen(function*() {
      const keySet = yield* KeySet.KeySet
      yield* TestClock.setTime(1_000_000_000)
      const error = yield* Effect.flip(keySet.verify("test", yield* signed({ exp: 1_000_000 - 1 })))
      assert.strictEqual(error.reason, "Expired")
    }).pipe(Effect.provide(layerServing({ current: jwksOf("k-1") }, seen, { clockTolerance: 0 })))
  })
  it.effect("signed but unusable: an extension asked for, a payload that is not an object, a time claim that is not a number", () => {
    const seen: Array<string> = []
    return Effect.gen(function*() {
      const keySet = yield* KeySet.KeySet
      yield* TestClock.setTime(1_000_000_000)
      const reasonOf = (token: string) => Effect.map(Effect.flip(keySet.verify("test", token)), (error) => error.reason)
      assert.strictEqual(yield* reasonOf(yield* signedWith({ crit: ["exp"] }, { exp: 1_000_100 })), "Malformed")
      assert.strictEqual(yield* reasonOf(yield* signedWith({ b64: false }, { exp: 1_000_100 })), "Malformed")
      assert.strictEqual(yield* reasonOf(yield* signedWith({}, [1, 2, 3])), "Malformed")
      for (const claim of ["exp", "nbf", "iat"]) {
        assert.strictEqual(yield* reasonOf(yield* signedWith({}, { [claim]: "1000100" })), "InvalidClaims")
      }
      // The same tokens, well formed, verify.
      yield* keySet.verify("test", yield* signedWith({}, { exp: 1_000_100, nbf: 999_990, iat: 999_990 }))
      // A payload changed after signing: the signature no longer holds.
      assert.strictEqual(yield* reasonOf(yield* signedWith({}, { exp: 1_000_100 }, true)), "InvalidSignature")
    }).pipe(Effect.provide(layerServing({ current: jwksOf("k-1") }, seen)))
  })

  it.effect("the signature is checked by the Verifier of the context (Web Crypto by default)", () => {
    const seen: Array<string> = []
    const asked: Array<number> = []
    const refusing: Verifier.Service = {
      verify: (_key, _input, signature) => Effect.sync(() => (asked.push(signature.length), false))
    }
    return Effect.gen(function*() {
      const keySet = yield* KeySet.KeySet
      yield* TestClock.setTime(1_000_000_000)
      const error = yield* Effect.flip(keySet.verify("test", yield* signed({ exp: 1_000_100 })))
      assert.strictEqual(error.reason, "InvalidSignature")
      // One check, of a 2048-bit RSA signature.
      assert.deepStrictEqual(asked, [256])
    }).pipe(
      Effect.provide(
        layerServing({ current: jwksOf("k-1") }, seen).pipe(
          Layer.provide(Layer.succeed(Verifier.Verifier, refusing))
        )
      )
    )
  })
})

describe("KeySet: redirects under FetchHttpClient", () => {
  it.effect("the key set is fetched with redirect: manual, through the Fetch of the calling fiber", () => {
    const modes: Array<RequestRedirect | undefined> = []
    const fetch: typeof globalThis.fetch = (_input, init) => {
      modes.push(init?.redirect)
      return Promise.resolve(new Response(null, { status: 302, headers: { location: "https://evil.example/jwks" } }))
    }
    return Effect.gen(function*() {
      const keySet = yield* KeySet.KeySet
      const error = yield* Effect.flip(keySet.verify(
        "test",
        [
          Encoding.encodeBase64Url(JSON.stringify({ alg: "PS512", jku: jwksUrl, kid: "k-1" })),
          Encoding.encodeBase64Url("{}"),
          "c2ln"
        ].join(".")
      ))
      assert.strictEqual(error.reason, "KeySetUnavailable")
      assert.deepStrictEqual(modes, ["manual"])
    }).pipe(
      Effect.provide(KeySet.layer.pipe(
        Layer.provide(FetchHttpClient.layer),
        Layer.provide(DigimeConfig.layer({ applicationId: "app", contracts: [testContract.contract] })),
        Layer.orDie
      )),
      Effect.provideService(FetchHttpClient.Fetch, fetch)
    )
  })
})
