/**
 * The keys digi.me signs its tokens with, and the verification of those tokens.
 *
 * Every token digi.me signs names its key set (`jku`) and its key (`kid`). Unlike a client that
 * downloads whatever `jku` a token names, `KeySet` fetches only from the origins on the
 * allow-list (`DigimeConfig.jwksOrigins`), refuses redirects (also under `FetchHttpClient`, which
 * would follow them) and bodies over a size limit, keeps the keys it has imported by `jku` and
 * `kid` for at most `DigimeConfig.keySetMaxAge` (a withdrawn key stops verifying), and downloads a
 * key set again at most once when a token names a `kid` it does not know (key rotation).
 *
 * The download is a request builder and a response processor (`jwksRequest`,
 * `processJwksResponse`), so the processor can be tested without HTTP.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { DigimeConfig } from "./DigimeConfig.js"
import { KeySetError, VerificationError } from "./DigimeError.js"
import * as DigimeMetrics from "./DigimeMetrics.js"
import { publicPemToSpki } from "./internal/der.js"
import { decodeUtf8 } from "./internal/encoding.js"
import { readHeader, verifySignature } from "./internal/jwt.js"
import { Jwks, JwksKey } from "./internal/protocol.js"
import * as Tracing from "./internal/tracing.js"
import { harden, readCapped, retrySchedule, timeout, transientStatuses } from "./internal/transport.js"
import { Verifier } from "./Verifier.js"

/**
 * The keys of one key set that could be imported, by `kid`.
 *
 * @since 0.1.0
 * @category models
 */
export type Keys = ReadonlyMap<string, CryptoKey>

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Verifies a token digi.me signed and returns its payload: `PS512` only, a `jku` on the
   * allow-list, the key found by `kid`, the signature, and `exp`/`nbf` against the `Clock` with
   * `DigimeConfig.clockTolerance`.
   * Failures are counted in `DigimeMetrics.verificationFailures`.
   */
  readonly verify: (
    operation: string,
    token: string
  ) => Effect.Effect<Readonly<Record<string, unknown>>, VerificationError>
}

/**
 * @since 0.1.0
 * @category services
 */
export class KeySet extends Context.Tag("@digime-effect/core/KeySet")<KeySet, Service>() {}

/**
 * The largest key set accepted, in bytes (a few keys take a few kilobytes).
 *
 * @since 0.1.0
 * @category models
 */
export const maxBytes = 64 * 1024

/**
 * The download of a key set: a plain `GET` of its URL, asking for JSON.
 *
 * @since 0.1.0
 * @category constructors
 */
export const jwksRequest = (url: string): HttpClientRequest.HttpClientRequest =>
  HttpClientRequest.get(url).pipe(HttpClientRequest.acceptJson)

const readText = (url: string, response: HttpClientResponse.HttpClientResponse) =>
  readCapped(response, maxBytes).pipe(
    Effect.map(decodeUtf8),
    Effect.catchTags({
      BodyTooLarge: () =>
        Effect.fail(new KeySetError({ url, reason: "TooLarge", description: `over ${maxBytes} bytes` })),
      BodyUnreadable: () =>
        Effect.fail(new KeySetError({ url, reason: "Transport", description: "the body could not be read" }))
    })
  )

const parseJson = (text: string | undefined): unknown => {
  if (text === undefined) return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const rsaPss = { name: "RSA-PSS", hash: "SHA-512" }

const importKey = (entry: typeof JwksKey.Type): Effect.Effect<Option.Option<CryptoKey>> => {
  const { e, kty, n, pem } = entry
  const imported = pem !== undefined
    ? Option.map(
      Option.fromNullable(publicPemToSpki(pem)),
      (spki) => Effect.tryPromise(() => globalThis.crypto.subtle.importKey("spki", spki, rsaPss, false, ["verify"]))
    )
    : kty === "RSA" && n !== undefined && e !== undefined
    ? Option.some(
      Effect.tryPromise(() =>
        globalThis.crypto.subtle.importKey("jwk", { kty, n, e } satisfies JsonWebKey, rsaPss, false, ["verify"])
      )
    )
    : Option.none()
  return Option.match(imported, {
    onNone: () => Effect.succeedNone,
    // Web Crypto imports an RSA key of any size: keys under 2048 bits are not trusted.
    onSome: (effect) =>
      effect.pipe(
        Effect.option,
        Effect.map(Option.filter((key) => (key.algorithm as RsaHashedKeyAlgorithm).modulusLength >= 2048))
      )
  })
}

/**
 * Reads the answer to `jwksRequest`: status 200 only (a redirect is refused, not followed),
 * at most `maxBytes`, a JSON document with a `keys` array. Entries that are not RSA public keys of
 * 2048 bits or more, in PEM (`pem`) or JWK (`kty`, `n`, `e`) form, are left out; of two entries
 * with the same `kid`, the last one counts.
 *
 * @since 0.1.0
 * @category constructors
 */
export const processJwksResponse = (
  response: HttpClientResponse.HttpClientResponse
): Effect.Effect<Keys, KeySetError> => {
  const url = response.request.url
  // 0: the opaque answer of a browser's fetch to a redirect it was told not to follow.
  if (response.status === 0 || (response.status >= 300 && response.status < 400)) {
    return Effect.fail(
      new KeySetError({ url, reason: "Redirect", status: response.status, description: "redirects are not followed" })
    )
  }
  if (response.status !== 200) {
    return Effect.fail(
      new KeySetError({
        url,
        reason: "Status",
        status: response.status,
        description: `the key set answered HTTP ${response.status}`
      })
    )
  }
  return readText(url, response).pipe(
    Effect.flatMap((text) =>
      Either.match(Schema.decodeUnknownEither(Jwks)(parseJson(text)), {
        onLeft: () =>
          Effect.fail(new KeySetError({ url, reason: "Malformed", description: "the key set has no keys array" })),
        onRight: (document) => Effect.succeed(document.keys)
      })
    ),
    Effect.flatMap((entries) => {
      const keys = new Map<string, CryptoKey>()
      return Effect.forEach(entries, (raw) =>
        Option.match(Schema.decodeUnknownOption(JwksKey)(raw), {
          onNone: () => Effect.void,
          onSome: (entry) =>
            Effect.map(importKey(entry), (key) => {
              if (Option.isSome(key)) keys.set(entry.kid, key.value)
            })
        }), { discard: true }).pipe(Effect.as<Keys>(keys))
    })
  )
}

const isRetryable = (error: KeySetError): boolean =>
  error.reason === "Transport" || error.reason === "Timeout" ||
  (error.reason === "Status" && error.status !== undefined && transientStatuses.has(error.status))

/**
 * A key set on the `HttpClient`, with the allow-list and time limit of `DigimeConfig`. Each
 * download is retried twice on a network error, a timeout or a transient status.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Service, never, HttpClient.HttpClient | DigimeConfig> = Effect.gen(function*() {
  const config = yield* DigimeConfig
  const verifier = yield* Verifier
  const httpClient = harden(yield* HttpClient.HttpClient)
  const maxAge = Duration.toMillis(config.keySetMaxAge)
  const tolerance = Duration.toSeconds(config.clockTolerance)
  // Each key set with the time it was downloaded: trusted for `keySetMaxAge`, then downloaded
  // again, so that a key withdrawn from it stops verifying.
  const cache = new Map<string, { readonly keys: Keys; readonly at: number }>()
  const fresh = (jku: string, now: number): Keys | undefined => {
    const entry = cache.get(jku)
    if (entry === undefined) return undefined
    if (now - entry.at < maxAge) return entry.keys
    cache.delete(jku)
    return undefined
  }
  const lock = yield* Effect.makeSemaphore(1)

  const download = (url: string): Effect.Effect<Keys, KeySetError> =>
    httpClient.execute(jwksRequest(url)).pipe(
      Effect.mapError((error) =>
        new KeySetError({ url, reason: "Transport", description: `the key set is unreachable (${error.reason})` })
      ),
      Effect.flatMap(processJwksResponse),
      timeout("jwks", config.requestTimeout),
      Effect.catchTag("RequestError", (error) =>
        Effect.fail(new KeySetError({ url, reason: "Timeout", description: error.description }))),
      Effect.retry({ schedule: retrySchedule, while: isRetryable }),
      Tracing.withSpan("KeySet.download", { kind: "client", attributes: { "url.full": url } })
    )

  // Of concurrent verifications that miss the same kid, one downloads; the others find its keys.
  const keysWith = (operation: string, jku: string, kid: string) =>
    lock.withPermits(1)(Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const cached = fresh(jku, now)
      if (cached?.has(kid) === true) return Effect.succeed(cached)
      return download(jku).pipe(
        Effect.tap((keys) => Clock.currentTimeMillis.pipe(Effect.map((at) => cache.set(jku, { keys, at })))),
        Effect.mapError((error) =>
          new VerificationError({ operation, reason: "KeySetUnavailable", description: error.description })
        )
      )
    }))

  const keyFor = (
    operation: string,
    jku: string,
    kid: string,
    now: number
  ): Effect.Effect<CryptoKey, VerificationError> => {
    const cached = fresh(jku, now)?.get(kid)
    if (cached !== undefined) return Effect.succeed(cached)
    return Effect.flatMap(keysWith(operation, jku, kid), (keys) => {
      const key = keys.get(kid)
      return key === undefined
        ? Effect.fail(
          new VerificationError({ operation, reason: "UnknownKey", description: `the key set names no key ${kid}` })
        )
        : Effect.succeed(key)
    })
  }

  const verify = (operation: string, token: string) =>
    Either.match(readHeader(operation, token), {
      onLeft: (error) => Effect.fail(error),
      onRight: ({ jku, kid }) =>
        !config.jwksOrigins.has(jku.origin) || jku.username !== "" || jku.password !== ""
          ? Effect.fail(
            new VerificationError({
              operation,
              reason: "UntrustedKeySet",
              description: `the jku origin ${jku.origin} is not on the allow-list`
            })
          )
          : Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.flatMap(
              keyFor(operation, jku.href, kid, now),
              (key) => verifySignature(operation, token, key, now, tolerance, verifier)
            ))
    }).pipe(
      Effect.tapError((error) =>
        Metric.increment(Metric.tagged(DigimeMetrics.verificationFailures, "reason", error.reason))
      )
    )

  return { verify } satisfies Service
})

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<KeySet, never, HttpClient.HttpClient | DigimeConfig> = Layer.effect(KeySet, make)
