/**
 * Property-based tests of every parser and validator that sees outside input: callback queries,
 * digi.me's error bodies and data answers, the tokens digi.me signs (header, payload, signature),
 * key sets, the configuration and token keys. Whatever the input, the outcome is a valid value
 * or one of the library's typed errors, never a defect, and the token store changes only when a
 * valid token was obtained.
 *
 * One seed for the whole file, from `FC_SEED` (default below), shown in the describe name so that
 * a failure can be replayed with `FC_SEED=<seed> pnpm exec vitest run --project core test/Properties`.
 * `FC_RUNS_SCALE` multiplies every `numRuns` (e.g. `10` for a long local run).
 */
import {
  Authorization,
  DataProtocol,
  DigimeClient,
  DigimeConfig,
  DigimeError,
  KeySet,
  TokenKey,
  TokenManager,
  TokenProtocol,
  TokenStore,
  UserAccessToken
} from "@digime-effect/core"
import { DigimeSimulator, DigimeTest } from "@digime-effect/core/testing"
import { HttpClient, HttpClientResponse } from "@effect/platform"
import type { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import {
  Cause,
  DateTime,
  Duration,
  Effect,
  Encoding,
  Exit,
  Fiber,
  Layer,
  Option,
  Redacted,
  Schema,
  TestClock,
  TestContext
} from "effect"
import * as fc from "fast-check"
import { applicationId, callbackUrl, contractId, key, stack, testContract } from "./fixtures.js"

// ---------------------------------------------------------------------------------------------
// seed and run counts
// ---------------------------------------------------------------------------------------------

const defaultSeed = 424242

const readInteger = (name: string, fallback: number): number => {
  const raw = process.env[name]
  if (raw === undefined || raw.trim() === "") return fallback
  const value = Number(raw)
  if (!Number.isSafeInteger(value)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`)
  return value
}

const seed = readInteger("FC_SEED", defaultSeed)
const scale = Math.max(1, readInteger("FC_RUNS_SCALE", 1))

/** Checks a property with the file's seed and `numRuns` scaled by `FC_RUNS_SCALE`. */
const check = <Ts>(property: fc.IRawProperty<Ts>, numRuns: number): Effect.Effect<void> =>
  Effect.promise(async () => {
    await fc.assert(property, { seed, numRuns: numRuns * scale })
  })

// ---------------------------------------------------------------------------------------------
// outcomes
// ---------------------------------------------------------------------------------------------

type Tag = DigimeError.DigimeError["_tag"]

type Outcome<A> =
  | { readonly _tag: "Success"; readonly value: A }
  | { readonly _tag: "Failure"; readonly error: DigimeError.DigimeError }

/** A success, or a failure with one of the `allowed` typed errors; anything else fails the property. */
const outcomeOf = <A, E>(exit: Exit.Exit<A, E>, allowed: ReadonlyArray<Tag>): Outcome<A> => {
  if (Exit.isSuccess(exit)) return { _tag: "Success", value: exit.value }
  if (Cause.isDie(exit.cause) || Cause.isInterrupted(exit.cause)) {
    return assert.fail(`a defect or an interruption instead of a typed error:\n${Cause.pretty(exit.cause)}`)
  }
  const error = Option.getOrUndefined(Cause.failureOption(exit.cause))
  if (!DigimeError.isDigimeError(error)) return assert.fail(`not a DigimeError: ${String(error)}`)
  assert.include(allowed, error._tag, `unexpected error: ${error.message}`)
  return { _tag: "Failure", error }
}

const failureOf = <A>(outcome: Outcome<A>): DigimeError.DigimeError => {
  if (outcome._tag === "Success") return assert.fail("expected a failure, got a success")
  return outcome.error
}

const reasonOf = (outcome: Outcome<unknown>): string | undefined =>
  outcome._tag === "Failure" && outcome.error._tag === "VerificationError" ? outcome.error.reason : undefined

/** Runs `effect` in a fiber and moves the `TestClock` on until it ends (retries sleep on it). */
const settle = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<Exit.Exit<A, E>, never, R> =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    for (let i = 0; i < 10_000; i++) {
      const done = yield* Fiber.poll(fiber)
      if (Option.isSome(done)) return done.value
      // Lets Web Crypto and the mocked answers progress, then wakes the sleeping retries.
      yield* TestClock.adjust("10 seconds")
    }
    return yield* Effect.dieMessage("the effect did not end")
  })

/** The stored token of the key, as a comparable string. */
const snapshot = (forKey: TokenKey.TokenKey = key) =>
  Effect.flatMap(TokenStore.TokenStore, (store) => store.get(forKey)).pipe(
    Effect.orDie,
    Effect.map(Option.match({
      onNone: () => "none",
      onSome: (v) =>
        [
          v.version,
          Redacted.value(v.token.accessToken.value),
          DateTime.formatIso(v.token.accessToken.expiresAt),
          Redacted.value(v.token.refreshToken.value),
          DateTime.formatIso(v.token.refreshToken.expiresAt)
        ].join("|")
    }))
  )

// ---------------------------------------------------------------------------------------------
// a client on a mocked HttpClient
// ---------------------------------------------------------------------------------------------

interface Reply {
  readonly status: number
  readonly text: string
}

const nullBodyStatuses = new Set([204, 205, 304])

/** A client whose every HTTP answer comes from `respond`; records the URLs asked. */
const mockedClient = (respond: (request: HttpClientRequest.HttpClientRequest) => Reply) => {
  const recorded: Array<string> = []
  const http = HttpClient.make((request) =>
    Effect.sync(() => {
      recorded.push(request.url)
      const reply = respond(request)
      const body = reply.text === "" || nullBodyStatuses.has(reply.status) ? null : reply.text
      return HttpClientResponse.fromWeb(
        request,
        new Response(body, { status: reply.status, headers: { "content-type": "application/json" } })
      )
    })
  )
  // No attempt ever times out here: `settle` moves the clock on by large steps.
  const layer = DigimeTest.layerWithHttpClient(http, { applicationId, config: { requestTimeout: "1000 days" } }).pipe(
    Layer.orDie
  )
  return { recorded, layer }
}

type Isolated = DigimeClient.DigimeClient | TokenManager.TokenManager | TokenStore.TokenStore

const runIsolated = <A, E>(
  effect: Effect.Effect<A, E, Isolated>,
  layer: Layer.Layer<Isolated, DigimeError.DigimeError>
) => Effect.runPromise(effect.pipe(Effect.provide(layer), Effect.provide(TestContext.TestContext)))

// ---------------------------------------------------------------------------------------------
// keys and tokens of our own
// ---------------------------------------------------------------------------------------------

const apiOrigin = "https://api.digi.me"
const jwksUrl = `${apiOrigin}/jwks/properties`
const kid = "properties-1"
const tokenUrl = `${DigimeConfig.defaultBaseUrl}oauth/token`

const rsaPss = { name: "RSA-PSS", hash: "SHA-512" } as const

const generate = () =>
  globalThis.crypto.subtle.generateKey(
    { ...rsaPss, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ["sign", "verify"]
  )

const toPem = (label: string, der: ArrayBuffer): string =>
  `-----BEGIN ${label}-----\n${
    Encoding.encodeBase64(new Uint8Array(der)).replace(/.{1,64}/g, "$&\n")
  }-----END ${label}-----\n`

const signingKey = await generate()
const otherKey = await generate()
const ecKey = await globalThis.crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign"])
const signingSpki = await globalThis.crypto.subtle.exportKey("spki", signingKey.publicKey)
const signingPem = toPem("PUBLIC KEY", signingSpki)
const otherPem = toPem("PUBLIC KEY", await globalThis.crypto.subtle.exportKey("spki", otherKey.publicKey))
const ecPem = toPem("PUBLIC KEY", await globalThis.crypto.subtle.exportKey("spki", ecKey.publicKey))
const signingJwk = await globalThis.crypto.subtle.exportKey("jwk", signingKey.publicKey)
const otherJwk = await globalThis.crypto.subtle.exportKey("jwk", otherKey.publicKey)

const b64url = (bytes: Uint8Array | string): string => Encoding.encodeBase64Url(bytes)

/** A PS512 JWS over exactly these header and payload texts. */
const signJws = async (privateKey: CryptoKey, headerText: string, payloadText: string): Promise<string> => {
  const input = `${b64url(headerText)}.${b64url(payloadText)}`
  const signature = await globalThis.crypto.subtle.sign(
    { name: "RSA-PSS", saltLength: 64 },
    privateKey,
    new TextEncoder().encode(input)
  )
  return `${input}.${b64url(new Uint8Array(signature))}`
}

const goodHeader = JSON.stringify({ alg: "PS512", typ: "JWT", jku: jwksUrl, kid })

const goodJwks = (form: "pem" | "jwk"): string =>
  JSON.stringify({
    keys: [form === "pem" ? { kid, pem: signingPem } : { kid, kty: "RSA", n: signingJwk.n, e: signingJwk.e }]
  })

const seededToken = new UserAccessToken.UserAccessToken({
  accessToken: new UserAccessToken.Token({
    value: Redacted.make("stored-access"),
    expiresAt: DateTime.unsafeMake(1_700_000_000_000 + 3_600_000)
  }),
  refreshToken: new UserAccessToken.Token({
    value: Redacted.make("stored-refresh"),
    expiresAt: DateTime.unsafeMake(1_700_000_000_000 + 30 * 86_400_000)
  })
})

/**
 * A code exchange, or a refresh of a stored token (`refresh`: the store holds `seededToken` first),
 * on a mocked digi.me answering the token endpoint with `token` and everything else (the key set)
 * with `jwks`. Every call runs in its own layers.
 */
const tokenCall = (operation: "exchange" | "refresh", token: Reply, jwks: Reply, now = 0) => {
  const { layer, recorded } = mockedClient((request) => request.url === tokenUrl ? token : jwks)
  return runIsolated(
    Effect.gen(function*() {
      yield* TestClock.setTime(now)
      const manager = yield* TokenManager.TokenManager
      if (operation === "refresh") {
        yield* Effect.orDie(Effect.flatMap(TokenStore.TokenStore, (store) => store.set(key, seededToken)))
      }
      const before = yield* snapshot()
      const exit = yield* settle(
        operation === "refresh"
          ? Effect.map(manager.refresh(key), (versioned): UserAccessToken.UserAccessToken => versioned.token)
          : manager.exchangeCodeForToken({ key, code: "code-1", codeVerifier: Redacted.make("verifier-1") }).pipe(
            Effect.mapError((error): DigimeError.DigimeError => error)
          )
      )
      const after = yield* snapshot()
      return { exit, before, after, recorded }
    }),
    layer
  )
}

const exchangeWith = (token: Reply, jwks: Reply, now = 0) => tokenCall("exchange", token, jwks, now)

// ---------------------------------------------------------------------------------------------
// arbitraries
// ---------------------------------------------------------------------------------------------

const hugeString = fc.constantFrom(
  "x".repeat(200_000),
  "%".repeat(50_000),
  "\u{1F600}".repeat(30_000),
  "a=b&".repeat(20_000)
)

const percentGarbage = fc
  .array(
    fc.constantFrom("%", "%2", "%zz", "%E0%A4%A", "%FF", "%00", "%C0%AF", "%ED%A0%80", "+", "&", "=", "?", "#", ";"),
    { maxLength: 12 }
  )
  .map((parts) => parts.join(""))

/** Short text of every kind: ASCII, any code unit (lone surrogates included), graphemes, escapes. */
const text = fc.oneof(
  { weight: 6, arbitrary: fc.string({ maxLength: 24 }) },
  { weight: 3, arbitrary: fc.string({ unit: "binary", maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 12 }) },
  { weight: 2, arbitrary: percentGarbage },
  { weight: 2, arbitrary: fc.constantFrom("", " ", "\t", "\u0000", "true", "false", "null", "undefined") },
  { weight: 1, arbitrary: hugeString }
)

/** Any JSON value, or one of the shapes that break naive parsers. */
const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: fc.jsonValue() },
  { weight: 1, arbitrary: fc.constantFrom(null, [], {}, "", 0, -1, true, { __proto__: null }) },
  { weight: 1, arbitrary: hugeString }
)

/** Right type most of the time, any JSON value otherwise. */
const mostly = <A>(arbitrary: fc.Arbitrary<A>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 4, arbitrary }, { weight: 1, arbitrary: anyJson })

/** A body text: JSON of `value`, or not JSON at all. */
const bodyText = (value: fc.Arbitrary<unknown>): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 6, arbitrary: value.map((v) => JSON.stringify(v) ?? "") },
    { weight: 1, arbitrary: text },
    { weight: 1, arbitrary: fc.constantFrom("", "{", "[1,", "<html>503</html>", "null", "\"token\"", "{\"error\":") }
  )

const pemLabel = fc.constantFrom("PUBLIC KEY", "RSA PUBLIC KEY", "PRIVATE KEY", "CERTIFICATE", "public key", "")

/** PEM-looking strings that are no usable RSA public key. */
const badPem = fc.oneof(
  fc.tuple(pemLabel, fc.uint8Array({ maxLength: 600 })).map(([label, bytes]) =>
    `-----BEGIN ${label}-----\n${Encoding.encodeBase64(bytes)}\n-----END ${label}-----\n`
  ),
  fc.tuple(pemLabel, text).map(([label, body]) => `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----`),
  fc.nat({ max: signingPem.length - 1 }).map((n) => signingPem.slice(0, n)),
  fc.constant(signingPem.replace(/PUBLIC KEY/g, "RSA PUBLIC KEY")),
  fc.constant(signingPem.replace(/[A-Z]{4}(?=\n)/, "!!!!")),
  fc.constant(ecPem),
  text
)

// ---------------------------------------------------------------------------------------------
// 1. callback queries
// ---------------------------------------------------------------------------------------------

const wellFormed = (s: string): string =>
  s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD")

type Slot = "state" | "code" | "accountReference"
/** A parameter value, or a slot filled at run time (the expected state, the real code). */
type Value = string | { readonly slot: Slot } | undefined

const paramName = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom("state", "code", "success", "errorCode", "accountReference") },
  { weight: 1, arbitrary: fc.constantFrom("__proto__", "constructor", "State", "state ", " state", "code[]", "") },
  { weight: 2, arbitrary: text }
)

const paramValue: fc.Arbitrary<Value> = fc.oneof(
  { weight: 3, arbitrary: text },
  { weight: 3, arbitrary: fc.constantFrom("true", "false", "") },
  { weight: 3, arbitrary: fc.constantFrom<Slot>("state", "code", "accountReference").map((slot) => ({ slot })) },
  { weight: 1, arbitrary: fc.constant(undefined) }
)

/** A parameter that is present most of the time, with the value a real callback would carry most of the time. */
const usually = (name: string, value: fc.Arbitrary<Value>, freq: number) =>
  fc.option(fc.oneof({ weight: 4, arbitrary: value }, { weight: 1, arbitrary: paramValue }), { freq }).map((v) =>
    v === null ? [] : [[name, v] as const]
  )

/** Random parameters, or the ones of a digi.me callback, each possibly missing or changed, plus extras. */
const pairs: fc.Arbitrary<ReadonlyArray<readonly [string, Value]>> = fc.oneof(
  { weight: 2, arbitrary: fc.array(fc.tuple(paramName, paramValue), { maxLength: 12 }) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        usually("state", fc.constant({ slot: "state" as const }), 8),
        usually("success", fc.constantFrom("true", "true", "false"), 8),
        usually("code", fc.constant({ slot: "code" as const }), 6),
        usually("errorCode", fc.constantFrom("E1", "ServiceAuthorizationError"), 2),
        usually("accountReference", fc.constant({ slot: "accountReference" as const }), 2),
        fc.array(fc.tuple(paramName, paramValue), { maxLength: 3 })
      )
      .map(([state, success, code, errorCode, accountReference, extra]) => [
        ...state,
        ...success,
        ...code,
        ...errorCode,
        ...accountReference,
        ...extra
      ])
  }
)

type Form = "record" | "params" | "url" | "encoded" | "raw"

interface CallbackCase {
  readonly form: Form
  readonly prefix: string
  readonly pairs: ReadonlyArray<readonly [string, Value]>
  readonly raw: string | undefined
}

const callbackCase: fc.Arbitrary<CallbackCase> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      form: fc.constantFrom<Form>("record", "params", "url", "encoded", "raw"),
      prefix: fc.constantFrom("", "?", `${callbackUrl}?`, "/digime/callback?", "??"),
      pairs,
      raw: fc.constant(undefined)
    })
  },
  {
    weight: 1,
    arbitrary: fc.record({
      form: fc.constant<Form>("raw"),
      prefix: fc.constant(""),
      pairs: fc.constant([]),
      raw: fc.oneof(text, fc.webUrl({ withQueryParameters: true, withFragments: true }))
    })
  }
)

const fill = (value: Value, slots: Readonly<Record<Slot, string>>): string | undefined =>
  value === undefined || typeof value === "string" ? value : slots[value.slot]

/** The callback in the form the case asks for, and the first value of each parameter as read from it. */
const buildCallback = (
  c: CallbackCase,
  slots: Readonly<Record<Slot, string>>
): { readonly query: TokenProtocol.CallbackQuery; readonly get: ((name: string) => string | null) | undefined } => {
  if (c.raw !== undefined) return { query: c.raw, get: undefined }
  const filled = c.pairs.map(([name, value]) => [name, fill(value, slots)] as const)
  const defined = filled.flatMap(([name, value]) => (value === undefined ? [] : [[name, value] as const]))
  const firstOf = (name: string) => {
    const found = defined.find(([n]) => wellFormed(n) === name)
    return found === undefined ? null : wellFormed(found[1])
  }
  switch (c.form) {
    case "record": {
      // Later entries win, as in an object literal; undefined values are no parameter.
      const record: Record<string, string | undefined> = Object.fromEntries(filled)
      return {
        query: record,
        get: (name) => {
          const own = Object.entries(record).filter(([n, v]) => wellFormed(n) === name && typeof v === "string")
          return own.length === 0 ? null : wellFormed(own[own.length - 1]![1]!)
        }
      }
    }
    case "params":
      return { query: new URLSearchParams(defined.map(([n, v]) => [n, v])), get: firstOf }
    case "url": {
      const url = new URL(callbackUrl)
      for (const [name, value] of defined) url.searchParams.append(name, value)
      return { query: url, get: firstOf }
    }
    case "encoded": {
      const query = new URLSearchParams(defined.map(([n, v]) => [n, v])).toString()
      return { query: `${c.prefix.replace(/\?+$/, "?")}${query}`, get: c.prefix === "??" ? undefined : firstOf }
    }
    case "raw":
      return { query: `${c.prefix}${defined.map(([n, v]) => `${n}=${v}`).join("&")}`, get: undefined }
  }
}

type Expected =
  | { readonly _tag: "Success"; readonly code: string; readonly accountReference: string | undefined }
  | { readonly _tag: "Failure"; readonly reason: DigimeError.CallbackError["reason"] | "InvalidOptions" }

/** What `parseCallback` must answer, from the parameters alone. */
const expectedCallback = (get: (name: string) => string | null, expectedState: string): Expected => {
  if (expectedState.trim() === "") return { _tag: "Failure", reason: "InvalidOptions" }
  const state = get("state")
  const success = get("success")
  if (state === null || state === "") {
    return { _tag: "Failure", reason: success === "false" ? "Denied" : "MissingState" }
  }
  if (state !== expectedState) return { _tag: "Failure", reason: "StateMismatch" }
  if (success === "false") return { _tag: "Failure", reason: "Denied" }
  if (success !== "true") return { _tag: "Failure", reason: "Malformed" }
  const code = get("code")
  if (code === null || code === "") return { _tag: "Failure", reason: "MissingCode" }
  const accountReference = get("accountReference")
  return {
    _tag: "Success",
    code,
    accountReference: accountReference === null || accountReference === "" ? undefined : accountReference
  }
}

// ---------------------------------------------------------------------------------------------
// 2. error bodies and data answers
// ---------------------------------------------------------------------------------------------

const transientStatuses = new Set([408, 429, 500, 502, 503, 504, 521, 522, 524])

const status = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 200, max: 599 }) },
  { weight: 2, arbitrary: fc.constantFrom(200, 202, 401) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(201, 204, 205, 304, 400, 403, 404, 406, 409, 429, 500, 502, 503, 504, 511, 524, 599)
  }
)

const errorCode = fc.oneof(
  fc.constantFrom("InvalidToken", "ValidationErrors", "InvalidRequest", "SDKInvalid", "InsufficientScope"),
  anyJson
)

const errorBody = fc.oneof(
  fc.record({
    error: fc.oneof(
      fc.record(
        { code: mostly(errorCode), message: mostly(text), reference: mostly(text) },
        { requiredKeys: [] }
      ),
      anyJson
    )
  }),
  fc.record({ error: mostly(errorCode), message: mostly(text) }, { requiredKeys: [] })
)

const account = fc.record({
  id: mostly(fc.string()),
  reference: mostly(fc.string()),
  type: mostly(fc.constantFrom("USER", "BANK", "PUSH")),
  createdDate: mostly(fc.integer()),
  updatedDate: mostly(fc.double()),
  serviceGroupId: mostly(fc.oneof(fc.integer(), fc.string())),
  serviceGroupName: mostly(fc.string()),
  serviceTypeId: mostly(fc.oneof(fc.integer(), fc.string())),
  serviceTypeName: mostly(fc.string()),
  serviceTypeReference: mostly(fc.string()),
  sourceId: mostly(fc.oneof(fc.integer(), fc.string())),
  accessTokenStatus: mostly(fc.record({ authorized: mostly(fc.boolean()), expiresAt: mostly(fc.integer()) }, {
    requiredKeys: []
  })),
  sample: mostly(fc.boolean())
}, { requiredKeys: ["id", "reference", "type", "createdDate", "updatedDate", "sourceId"] })

const validAccount = fc.record({
  id: fc.string(),
  reference: fc.string(),
  type: fc.constantFrom("USER", "BANK", "PUSH"),
  createdDate: fc.integer(),
  updatedDate: fc.integer(),
  serviceGroupId: fc.oneof(fc.integer(), fc.string()),
  serviceGroupName: fc.string(),
  serviceTypeId: fc.integer(),
  serviceTypeName: fc.string(),
  serviceTypeReference: fc.string(),
  sourceId: fc.oneof(fc.integer(), fc.string()),
  accessTokenStatus: fc.record({ authorized: fc.boolean(), expiresAt: fc.integer() }, { requiredKeys: ["authorized"] }),
  username: fc.string()
}, { requiredKeys: ["id", "reference", "type", "createdDate", "updatedDate", "serviceGroupId", "serviceGroupName"] })
  .map((partial) => ({
    serviceTypeId: 1,
    serviceTypeName: "t",
    serviceTypeReference: "r",
    sourceId: 2,
    ...partial
  }))

const answerBody = bodyText(fc.oneof(
  { weight: 2, arbitrary: fc.array(validAccount, { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.record({ session: fc.record({ expiry: fc.integer(), key: fc.string() }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      error: fc.record({ code: fc.constant("InvalidToken"), message: fc.string(), reference: fc.string() }, {
        requiredKeys: ["code"]
      })
    })
  },
  { weight: 2, arbitrary: anyJson },
  { weight: 3, arbitrary: errorBody },
  { weight: 2, arbitrary: fc.array(account, { maxLength: 4 }) },
  {
    weight: 2,
    arbitrary: fc.record({ session: mostly(fc.record({ expiry: mostly(fc.double()), key: mostly(fc.string()) })) })
  },
  { weight: 1, arbitrary: fc.record({ token: mostly(text) }) }
))

type Operation = "readAccounts" | "readSession" | "refreshToken"

const credentials = { contractId, accessToken: Redacted.make("access-token-value") }

const callOperation = (
  client: DigimeClient.Service,
  operation: Operation
): Effect.Effect<unknown, DigimeError.DigimeError> =>
  operation === "readAccounts"
    ? client.readAccounts(credentials)
    : operation === "readSession"
    ? client.readSession(credentials)
    : client.refreshToken({ contractId, refreshToken: Redacted.make("refresh-token-value") })

// ---------------------------------------------------------------------------------------------
// 3. tokens that cannot verify
// ---------------------------------------------------------------------------------------------

const headerValue = fc.record({
  alg: fc.oneof(
    { weight: 4, arbitrary: fc.constant("PS512") },
    { weight: 1, arbitrary: fc.constantFrom("none", "RS256", "ps512", "PS256", "HS512", "") },
    { weight: 1, arbitrary: anyJson }
  ),
  typ: mostly(fc.constant("JWT")),
  jku: fc.oneof(
    { weight: 4, arbitrary: fc.constant(jwksUrl) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        "https://evil.example/jwks",
        "https://user:pw@api.digi.me/jwks",
        "https://api.digi.me@evil.example/jwks",
        "http://api.digi.me/jwks",
        "https://api.digi.me:443/jwks/properties",
        "https://API.DIGI.ME/jwks/properties",
        "https://api.digi.me./jwks",
        "//api.digi.me/jwks",
        "api.digi.me",
        "javascript:alert(1)",
        ""
      )
    },
    { weight: 1, arbitrary: fc.webUrl() },
    { weight: 1, arbitrary: anyJson }
  ),
  kid: fc.oneof({ weight: 3, arbitrary: fc.constant(kid) }, { weight: 1, arbitrary: text }, {
    weight: 1,
    arbitrary: anyJson
  }),
  crit: anyJson,
  b64: fc.boolean()
}, { requiredKeys: [] }).chain((header) =>
  // alg, jku and kid are there most of the time, so that the later checks are reached too.
  fc.constantFrom<ReadonlyArray<string>>(["alg", "jku", "kid"], ["alg", "jku", "kid"], ["alg", "jku", "kid"], []).map(
    (names) => {
      const out: Record<string, unknown> = { ...header }
      const defaults: Record<string, string> = { alg: "PS512", jku: jwksUrl, kid }
      for (const name of names) if (!(name in out)) out[name] = defaults[name]
      return out
    }
  )
)

const segment = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map(b64url),
  text,
  fc.constantFrom("", "=", "AA==", "!!", "....")
)

const unverifiableToken = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(bodyText(headerValue), bodyText(anyJson), fc.uint8Array({ maxLength: 600 }))
      .map(([header, payload, signature]) => `${b64url(header)}.${b64url(payload)}.${b64url(signature)}`)
  },
  { weight: 1, arbitrary: fc.array(segment, { maxLength: 5 }).map((segments) => segments.join(".")) },
  { weight: 1, arbitrary: text }
)

const jwksEntry = fc.oneof(
  { weight: 1, arbitrary: anyJson },
  {
    weight: 4,
    arbitrary: fc.record({
      kid: fc.oneof({ weight: 3, arbitrary: fc.constant(kid) }, { weight: 1, arbitrary: anyJson }),
      pem: fc.oneof(
        { weight: 1, arbitrary: fc.constant(signingPem) },
        { weight: 1, arbitrary: fc.constant(otherPem) },
        { weight: 3, arbitrary: badPem },
        { weight: 1, arbitrary: anyJson }
      ),
      kty: mostly(fc.constant("RSA")),
      n: fc.oneof(fc.constant(signingJwk.n), fc.constant(otherJwk.n), fc.constantFrom("", "!!", "@@@@"), anyJson),
      e: fc.oneof(fc.constant(signingJwk.e), fc.constantFrom("", "!!"), anyJson)
    }, { requiredKeys: [] })
  }
)

const jwksDocument = fc.oneof(
  { weight: 1, arbitrary: anyJson },
  { weight: 4, arbitrary: fc.record({ keys: fc.oneof(fc.array(jwksEntry, { maxLength: 5 }), anyJson) }) }
)

const jwksReply: fc.Arbitrary<Reply> = fc.record({
  status: fc.oneof({ weight: 5, arbitrary: fc.constant(200) }, { weight: 1, arbitrary: status }),
  text: bodyText(jwksDocument)
})

// ---------------------------------------------------------------------------------------------
// 4. payloads signed with a trusted key
// ---------------------------------------------------------------------------------------------

/** A JSON number written exactly like this, e.g. `1e400` (which parses to Infinity) or `-0`. */
class Literal {
  constructor(readonly text: string) {}
}

const toJsonText = (value: unknown): string =>
  value instanceof Literal
    ? value.text
    : Array.isArray(value)
    ? `[${value.map(toJsonText).join(",")}]`
    : typeof value === "object" && value !== null
    ? `{${Object.entries(value).map(([name, v]) => `${JSON.stringify(name)}:${toJsonText(v)}`).join(",")}}`
    : JSON.stringify(value) ?? "null"

const maxDateMillis = 8_640_000_000_000_000

const now = 1_700_000_000_000
const nowSeconds = now / 1000

const expiry = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 4_102_444_800 }) },
  { weight: 2, arbitrary: fc.double({ min: 0, max: 1e10, noNaN: true }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      0,
      -1,
      -0.4,
      0.0004,
      0.0005,
      1e-300,
      nowSeconds,
      8_640_000_000_000,
      Number.MAX_SAFE_INTEGER,
      Number.MAX_VALUE,
      -Number.MAX_VALUE
    )
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom("1e400", "-1e400", "-0", "1e-400", "0e0", "1E3", "4102444800.999").map((t) =>
      new Literal(t)
    )
  },
  { weight: 1, arbitrary: fc.integer({ min: -1e12, max: -1 }) },
  { weight: 1, arbitrary: fc.constantFrom("1700000000", "NaN", "Infinity", "", null, true, [1], { seconds: 1 }) }
)

const tokenValue = fc.oneof(
  { weight: 4, arbitrary: fc.string({ minLength: 1, maxLength: 40 }) },
  { weight: 2, arbitrary: text },
  { weight: 1, arbitrary: anyJson }
)

const plausibleWireToken = fc.record({
  value: fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), fc.string({ unit: "binary", minLength: 1 }), hugeString),
  expires_on: fc.oneof(fc.integer({ min: 0, max: 4_102_444_800 }), fc.double({ min: 0, max: 8.64e12, noNaN: true }))
})

const wireToken = fc.oneof(
  { weight: 8, arbitrary: plausibleWireToken },
  { weight: 8, arbitrary: fc.record({ value: tokenValue, expires_on: expiry, extra: anyJson }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.record({ value: tokenValue, expires_on: expiry }) },
  { weight: 1, arbitrary: anyJson }
)

const registeredClaim = fc.oneof(
  fc.integer({ min: nowSeconds - 10_000, max: nowSeconds + 10_000 }),
  fc.constantFrom<unknown>("soon", null, -1, new Literal("1e400"), new Literal("-1e400"))
)

const signedPayload = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      access_token: wireToken,
      refresh_token: wireToken,
      sub: mostly(fc.string()),
      consentid: mostly(fc.string()),
      exp: fc.oneof(registeredClaim, fc.constant(nowSeconds + 3600)),
      nbf: registeredClaim,
      iat: registeredClaim,
      extra: anyJson
    }, { requiredKeys: [] })
  },
  {
    weight: 4,
    arbitrary: fc.record({ access_token: wireToken, refresh_token: wireToken }, {
      requiredKeys: ["access_token", "refresh_token"]
    })
  },
  { weight: 1, arbitrary: anyJson }
)

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** A wire token as the protocol allows it: a non-empty value and an expiry in the `Date` range. */
const validWireToken = (u: unknown): boolean =>
  isObject(u) && typeof u.value === "string" && u.value.length > 0 && typeof u.expires_on === "number" &&
  Number.isFinite(u.expires_on) && u.expires_on >= 0 && Math.round(u.expires_on * 1000) <= maxDateMillis

/** What the verification of a correctly signed token with this (parsed) payload must give. */
const expectedPayloadOutcome = (payload: unknown): "Success" | VerificationReason => {
  if (!isObject(payload)) return "Malformed"
  // The registered claims jose checks first, in its order.
  if (payload.iat !== undefined && typeof payload.iat !== "number") return "InvalidClaims"
  if (payload.nbf !== undefined && (typeof payload.nbf !== "number" || payload.nbf > nowSeconds)) {
    return "InvalidClaims"
  }
  if (payload.exp !== undefined && typeof payload.exp !== "number") return "InvalidClaims"
  if (typeof payload.exp === "number" && payload.exp <= nowSeconds) return "Expired"
  const valid = validWireToken(payload.access_token) && validWireToken(payload.refresh_token) &&
    (payload.sub === undefined || typeof payload.sub === "string") &&
    (payload.consentid === undefined || typeof payload.consentid === "string")
  return valid ? "Success" : "InvalidClaims"
}

type VerificationReason = DigimeError.VerificationError["reason"]

const wireDate = (seconds: number): number => Math.round(seconds * 1000)

// ---------------------------------------------------------------------------------------------
// 6. configuration
// ---------------------------------------------------------------------------------------------

const urlInput = fc.oneof(
  { weight: 2, arbitrary: fc.webUrl({ withQueryParameters: true, withFragments: true }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "https://api.digi.me/v1.7",
      "http://localhost:8080",
      "https://[::1]:8443/x/",
      "http://x?y",
      "https://a#f",
      "ftp://a.example/",
      "javascript:alert(1)",
      "file:///etc/passwd",
      "https://user:pw@api.digi.me/",
      "https://",
      "/relative",
      "",
      " https://api.digi.me/ "
    )
  },
  { weight: 1, arbitrary: text }
)

const durationInput: fc.Arbitrary<Duration.DurationInput | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.double(),
  fc.integer(),
  fc.bigInt(),
  fc.tuple(fc.double(), fc.double()),
  fc.constantFrom("1 second", "-5 seconds", "0 millis", "1e400 millis", "NaN seconds", "Infinity", "10 weeks", "5"),
  fc.tuple(fc.double(), fc.constantFrom("nanos", "millis", "seconds", "minutes", "days", "weeks", "years"))
    .map(([n, unit]) => `${n} ${unit}`),
  text
) as fc.Arbitrary<Duration.DurationInput | undefined>

const contractArb = fc.oneof(
  { weight: 1, arbitrary: fc.constant(testContract.contract) },
  {
    weight: 3,
    arbitrary: fc.record({
      contractId: fc.oneof(text, fc.constantFrom("contract-1", " contract-1", "c")),
      privateKey: fc.oneof(text, badPem).map((k) => Redacted.make(k))
    })
  }
)

/** The default most of the time (undefined), a plausible value often, anything otherwise. */
const optional = <A>(plausible: fc.Arbitrary<A>, anything: fc.Arbitrary<A>): fc.Arbitrary<A | undefined> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: plausible },
    { weight: 1, arbitrary: anything }
  )

const plausibleUrl = fc.constantFrom("https://api.digi.me/v1.7", "http://localhost:8080/", "https://sim.example/api/")
const plausibleDuration = fc.oneof(
  fc.nat(),
  fc.constantFrom<Duration.DurationInput>("5 seconds", "1 minute", "0 millis", Duration.seconds(3))
)

const configOptions: fc.Arbitrary<DigimeConfig.Options> = fc.record({
  applicationId: fc.oneof({ weight: 3, arbitrary: fc.constant("app-1") }, { weight: 1, arbitrary: text }),
  contracts: fc.oneof(
    { weight: 3, arbitrary: fc.constant([testContract.contract]) },
    { weight: 1, arbitrary: fc.array(contractArb, { maxLength: 3 }) }
  ),
  baseUrl: optional(plausibleUrl, urlInput),
  onboardUrl: optional(plausibleUrl, urlInput),
  refreshLeadTime: optional(plausibleDuration, durationInput),
  requestTimeout: optional(plausibleDuration, durationInput),
  tokenCacheTtl: optional(plausibleDuration, durationInput),
  jwksOrigins: optional(fc.array(plausibleUrl, { maxLength: 2 }), fc.array(urlInput, { maxLength: 3 })),
  sdkAgent: optional(fc.constant({ name: "nodejs", version: "16.1.5" }), fc.record({ name: text, version: text }))
})

// ---------------------------------------------------------------------------------------------
// the properties
// ---------------------------------------------------------------------------------------------

describe(`properties (fast-check seed ${seed})`, () => {
  it.effect("parseCallback: any query ends in the result its parameters call for, or a typed error", () =>
    check(
      fc.property(
        callbackCase,
        fc.oneof(fc.constant("state-1"), text),
        fc.string({ minLength: 1, maxLength: 30 }),
        (c, expectedState, code) => {
          const { get, query } = buildCallback(c, { state: expectedState, code, accountReference: "acc-1" })
          const outcome = outcomeOf(
            Effect.runSyncExit(TokenProtocol.parseCallback(query, expectedState)),
            ["CallbackError", "InvalidOptions"]
          )
          if (outcome._tag === "Success") {
            assert.strictEqual(outcome.value.state, expectedState)
            assert.isAbove(Redacted.value(outcome.value.code).length, 0)
            assert.notStrictEqual(outcome.value.accountReference, "")
          }
          if (get === undefined) {
            if (expectedState.trim() === "") {
              assert.strictEqual(failureOf(outcome)._tag, "InvalidOptions")
            }
            return
          }
          const expected = expectedCallback(get, expectedState)
          if (expected._tag === "Success") {
            assert.strictEqual(outcome._tag, "Success")
            if (outcome._tag === "Success") {
              assert.strictEqual(Redacted.value(outcome.value.code), expected.code)
              assert.strictEqual(outcome.value.accountReference, expected.accountReference)
            }
          } else {
            const error = failureOf(outcome)
            assert.strictEqual(error._tag === "CallbackError" ? error.reason : error._tag, expected.reason)
          }
        }
      ),
      1000
    ))

  it.effect("completeAuthorization: any callback is refused typed, or completes and stores its token", () =>
    check(
      fc.asyncProperty(callbackCase, async (c) => {
        const result = await Effect.runPromise(
          Effect.gen(function*() {
            const simulator = yield* DigimeSimulator.DigimeSimulator
            const started = yield* Authorization.startAuthorization({ key, callbackUrl })
            const real = new URL(yield* simulator.consent(started.url)).searchParams
            const { query } = buildCallback(c, {
              state: started.state,
              code: real.get("code") ?? "",
              accountReference: real.get("accountReference") ?? ""
            })
            const before = yield* snapshot()
            const exit = yield* Effect.exit(Authorization.completeAuthorization(query))
            const after = yield* snapshot()
            // A second delivery of the same callback never changes the store again.
            const replay = yield* Effect.exit(Authorization.completeAuthorization(query))
            const afterReplay = yield* snapshot()
            return { exit, before, after, replay, afterReplay }
          }).pipe(Effect.provide(stack()), Effect.provide(TestContext.TestContext))
        )
        const allowed: ReadonlyArray<Tag> = ["CallbackError", "InvalidOptions", "ApiError"]
        const outcome = outcomeOf(result.exit, allowed)
        assert.strictEqual(result.before, "none")
        if (outcome._tag === "Success") {
          assert.notStrictEqual(result.after, "none")
          assert.include(result.after, Redacted.value(outcome.value.token.accessToken.value))
        } else {
          assert.strictEqual(result.after, result.before)
        }
        failureOf(outcomeOf(result.replay, allowed))
        assert.strictEqual(result.afterReplay, result.after)
      }),
      30
    ))

  it.effect("data calls and refresh: any status and body end in a valid value or a typed error", () =>
    check(
      fc.asyncProperty(
        fc.constantFrom<Operation>("readAccounts", "readSession", "refreshToken"),
        fc.oneof({ weight: 6, arbitrary: status }, { weight: 1, arbitrary: fc.constant(401) }),
        fc.oneof(
          {
            weight: 1,
            arbitrary: fc.record({ code: fc.constant("InvalidToken"), reference: mostly(fc.string()) })
              .map((error) => JSON.stringify({ error }))
          },
          { weight: 3, arbitrary: answerBody },
          { weight: 1, arbitrary: fc.array(validAccount, { maxLength: 3 }).map((list) => JSON.stringify(list)) },
          {
            weight: 1,
            arbitrary: fc.record({ expiry: fc.double({ noNaN: true, noDefaultInfinity: true }), key: fc.string() })
              .map((session) => JSON.stringify({ session }))
          }
        ),
        async (operation, answerStatus, answerText) => {
          const { layer, recorded } = mockedClient(() => ({ status: answerStatus, text: answerText }))
          const result = await runIsolated(
            Effect.gen(function*() {
              const client = yield* DigimeClient.DigimeClient
              const exit = yield* settle(callOperation(client, operation))
              return { exit, after: yield* snapshot() }
            }),
            layer
          )
          const ok = answerStatus >= 200 && answerStatus < 300
          const outcome = outcomeOf(
            result.exit,
            ok
              ? (operation === "refreshToken" ? ["ResponseError", "VerificationError"] : ["ResponseError"])
              : (operation === "refreshToken" ? ["ApiError"] : ["ApiError", "AccessTokenRejected"])
          )
          if (outcome._tag === "Success") {
            assert.isTrue(operation !== "refreshToken")
            if (operation === "readAccounts") {
              assert.isTrue(Schema.is(Schema.Array(DataProtocol.Account))(outcome.value))
            } else {
              assert.instanceOf(outcome.value, DataProtocol.Session)
            }
          } else {
            const error = outcome.error
            if (error._tag === "ApiError" || error._tag === "ResponseError") {
              assert.strictEqual(error.status, answerStatus)
            }
            if (error._tag === "AccessTokenRejected") {
              assert.strictEqual(error.status, 401)
              assert.include(answerText, "InvalidToken")
            }
          }
          // Only reads are repeated, and only on a transient status.
          const expectedRequests = operation === "readAccounts" && transientStatuses.has(answerStatus) ? 3 : 1
          assert.strictEqual(recorded.filter((url) => !url.startsWith(jwksUrl)).length, expectedRequests)
          assert.strictEqual(result.after, "none")
        }
      ),
      300
    ))

  it.effect("exchange: tokens that cannot verify end in VerificationError or ResponseError, nothing stored", () =>
    check(
      fc.asyncProperty(
        fc.oneof(
          { weight: 6, arbitrary: unverifiableToken.map((token) => JSON.stringify({ token })) },
          { weight: 1, arbitrary: bodyText(fc.record({ token: anyJson }, { requiredKeys: [] })) }
        ),
        jwksReply,
        async (tokenText, jwks) => {
          const result = await exchangeWith({ status: 200, text: tokenText }, jwks)
          failureOf(outcomeOf(result.exit, ["VerificationError", "ResponseError"]))
          assert.strictEqual(result.after, "none")
          // Nothing was fetched from anywhere but digi.me's origin.
          for (const url of result.recorded) assert.strictEqual(new URL(url).origin, apiOrigin)
        }
      ),
      200
    ))

  it.effect("exchange: correctly signed payloads are stored only when valid, otherwise typed and nothing stored", () =>
    check(
      fc.asyncProperty(signedPayload, fc.constantFrom<"pem" | "jwk">("pem", "jwk"), async (payload, form) => {
        const payloadText = toJsonText(payload)
        const parsed: unknown = JSON.parse(payloadText)
        const token = await signJws(signingKey.privateKey, goodHeader, payloadText)
        const result = await exchangeWith(
          { status: 200, text: JSON.stringify({ token }) },
          { status: 200, text: goodJwks(form) },
          now
        )
        const expected = expectedPayloadOutcome(parsed)
        const outcome = outcomeOf(result.exit, ["VerificationError"])
        if (expected !== "Success") {
          assert.strictEqual(reasonOf(outcome), expected)
          assert.strictEqual(result.after, "none")
          return
        }
        assert.strictEqual(outcome._tag, "Success", `expected a stored token, got ${reasonOf(outcome)}`)
        if (outcome._tag !== "Success" || !isObject(parsed)) return
        const wire = (name: string) => parsed[name] as { readonly value: string; readonly expires_on: number }
        const token_ = outcome.value
        assert.isTrue(Schema.is(UserAccessToken.UserAccessToken)(token_))
        assert.strictEqual(Redacted.value(token_.accessToken.value), wire("access_token").value)
        assert.strictEqual(Redacted.value(token_.refreshToken.value), wire("refresh_token").value)
        assert.strictEqual(
          DateTime.toEpochMillis(token_.accessToken.expiresAt),
          wireDate(wire("access_token").expires_on)
        )
        assert.strictEqual(
          DateTime.toEpochMillis(token_.refreshToken.expiresAt),
          wireDate(wire("refresh_token").expires_on)
        )
        assert.strictEqual(token_.digimeUserId, parsed.sub)
        assert.strictEqual(token_.consentId, parsed.consentid)
        assert.isTrue(result.after.startsWith("1|"))
        assert.include(result.after, wire("access_token").value)
      }),
      100
    ))

  it.effect("refresh of a stored token: any answer ends typed and leaves the store as it was, unless valid", () =>
    check(
      fc.asyncProperty(
        fc.oneof(
          {
            weight: 2,
            arbitrary: fc.record({ status, text: answerBody }).map((reply) => ({ reply, payload: undefined }))
          },
          {
            weight: 1,
            arbitrary: fc.record({
              code: fc.constant("InvalidToken"),
              message: mostly(fc.constantFrom(
                "The token (refresh_token) is invalid",
                "The token (refresh_token) is expired"
              ))
            }, { requiredKeys: ["code"] }).map((error) => ({
              reply: { status: 401, text: JSON.stringify({ error }) },
              payload: undefined
            }))
          },
          { weight: 3, arbitrary: signedPayload.map((payload) => ({ reply: undefined, payload })) }
        ),
        async ({ payload, reply }) => {
          const payloadText = payload === undefined ? undefined : toJsonText(payload)
          const answer = payloadText === undefined
            ? reply!
            : {
              status: 200,
              text: JSON.stringify({ token: await signJws(signingKey.privateKey, goodHeader, payloadText) })
            }
          const result = await tokenCall("refresh", answer, { status: 200, text: goodJwks("pem") }, now)
          const outcome = outcomeOf(result.exit, [
            "ApiError",
            "ResponseError",
            "VerificationError",
            "RefreshTokenExpired",
            "ReauthRequired"
          ])
          assert.isTrue(result.before.startsWith("1|"))
          if (outcome._tag === "Failure") {
            assert.strictEqual(result.after, result.before)
          } else {
            assert.isTrue(result.after.startsWith("2|"))
            assert.include(result.after, Redacted.value(outcome.value.accessToken.value))
          }
          if (payloadText !== undefined) {
            const expected = expectedPayloadOutcome(JSON.parse(payloadText))
            assert.strictEqual(outcome._tag === "Success" ? "Success" : reasonOf(outcome), expected)
          } else if (answer.status === 401 && /"InvalidToken"/.test(answer.text)) {
            const error = failureOf(outcome)
            assert.include(["RefreshTokenExpired", "ReauthRequired", "ApiError"], error._tag)
          }
        }
      ),
      100
    ))

  // Found by this file: an expiry past the last valid Date once made the schema throw.
  it.effect("exchange: expiries past the last Date (8.64e12 s) but below 2^53 ms end typed, nothing stored", () =>
    check(
      fc.asyncProperty(
        fc.double({ min: 8_640_000_000_000.001, max: 9_007_199_254_740.99, noNaN: true }),
        async (seconds) => {
          const payload = {
            access_token: { value: "a", expires_on: seconds },
            refresh_token: { value: "r", expires_on: nowSeconds + 86400 }
          }
          const token = await signJws(signingKey.privateKey, goodHeader, JSON.stringify(payload))
          const result = await exchangeWith(
            { status: 200, text: JSON.stringify({ token }) },
            { status: 200, text: goodJwks("pem") },
            now
          )
          assert.strictEqual(reasonOf(outcomeOf(result.exit, ["VerificationError"])), "InvalidClaims")
          assert.strictEqual(result.after, "none")
        }
      ),
      20
    ))

  it.effect("exchange: any key set ends in a typed VerificationError unless it holds the signing key", () =>
    check(
      fc.asyncProperty(jwksReply, async (jwks) => {
        const payload = {
          access_token: { value: "a", expires_on: nowSeconds + 3600 },
          refresh_token: { value: "r", expires_on: nowSeconds + 86400 }
        }
        const token = await signJws(signingKey.privateKey, goodHeader, JSON.stringify(payload))
        const result = await exchangeWith({ status: 200, text: JSON.stringify({ token }) }, jwks, now)
        const outcome = outcomeOf(result.exit, ["VerificationError"])
        let document: unknown = undefined
        try {
          document = JSON.parse(jwks.text)
        } catch {
          // not JSON: no key set
        }
        const keys = isObject(document) && Array.isArray(document.keys) ? document.keys as Array<unknown> : undefined
        // Not 200, not a key set, or over the size limit (a key set is never downloaded whole then).
        const tooLarge = new TextEncoder().encode(jwks.text).length > KeySet.maxBytes
        if (jwks.status !== 200 || keys === undefined || tooLarge) {
          assert.strictEqual(reasonOf(outcome), "KeySetUnavailable")
          assert.strictEqual(result.after, "none")
          return
        }
        const isReal = (entry: Record<string, unknown>) =>
          entry.pem === signingPem ||
          (entry.pem === undefined && entry.kty === "RSA" && entry.n === signingJwk.n && entry.e === signingJwk.e)
        const decodable = (entry: unknown): entry is Record<string, unknown> =>
          isObject(entry) && entry.kid === kid &&
          ["pem", "kty", "n", "e"].every((name) => entry[name] === undefined || typeof entry[name] === "string")
        const candidates = keys.filter(decodable)
        const last = candidates[candidates.length - 1]
        if (last === undefined) assert.strictEqual(reasonOf(outcome), "UnknownKey")
        else if (isReal(last)) assert.strictEqual(outcome._tag, "Success")
        else if (outcome._tag === "Success") assert.isTrue(candidates.some(isReal))
        else {
          // A JWK with a junk modulus imports (Web Crypto checks no size) and then makes the
          // verification throw, reported as Malformed: see the known gap below.
          const junkModulus = candidates.some((entry) =>
            entry.pem === undefined && entry.kty === "RSA" && typeof entry.n === "string" &&
            entry.n !== signingJwk.n && entry.n !== otherJwk.n
          )
          assert.include(
            junkModulus ? ["UnknownKey", "InvalidSignature", "Malformed"] : ["UnknownKey", "InvalidSignature"],
            reasonOf(outcome)
          )
        }
        assert.strictEqual(result.after === "none", outcome._tag === "Failure")
      }),
      100
    ))

  it.effect("DigimeConfig.make: any options end in a valid configuration or InvalidConfig", () =>
    check(
      fc.property(configOptions, (options) => {
        const outcome = outcomeOf(Effect.runSyncExit(DigimeConfig.make(options)), ["InvalidConfig"])
        if (outcome._tag === "Failure") return
        const config = outcome.value
        assert.isAbove(config.applicationId.length, 0)
        for (const url of [config.baseUrl, config.onboardUrl]) {
          assert.isTrue(url.endsWith("/"))
          assert.include(["http:", "https:"], new URL(url).protocol)
        }
        for (const duration of [config.refreshLeadTime, config.tokenCacheTtl, config.requestTimeout]) {
          assert.isTrue(Duration.isFinite(duration))
          assert.isTrue(Duration.greaterThanOrEqualTo(duration, Duration.zero))
        }
        assert.isTrue(Duration.greaterThan(config.requestTimeout, Duration.zero))
        assert.isAbove(config.contracts.size, 0)
        // An empty allow-list is accepted as given (every token is then refused).
        assert.isAbove(config.jwksOrigins.size, 0)
        for (const origin of config.jwksOrigins) assert.strictEqual(new URL(origin).origin, origin)
        for (const [id, contract] of config.contracts) {
          assert.strictEqual(id, contract.contractId)
          assert.strictEqual(id, id.trim())
          assert.isAbove(id.length, 0)
        }
      }),
      1000
    ))

  // Found by this file: RSA keys of any size used to be imported from the key set.
  it.effect("exchange: a key set whose key for the kid has a junk modulus is never blamed on the token", () =>
    check(
      fc.asyncProperty(
        fc.oneof(fc.constantFrom("", "AA", "AQ", "AQAB"), fc.uint8Array({ minLength: 1, maxLength: 64 }).map(b64url)),
        async (n) => {
          const payload = {
            access_token: { value: "a", expires_on: nowSeconds + 3600 },
            refresh_token: { value: "r", expires_on: nowSeconds + 86400 }
          }
          const token = await signJws(signingKey.privateKey, goodHeader, JSON.stringify(payload))
          const result = await exchangeWith(
            { status: 200, text: JSON.stringify({ token }) },
            { status: 200, text: JSON.stringify({ keys: [{ kid, kty: "RSA", n, e: "AQAB" }] }) },
            now
          )
          assert.include(["UnknownKey", "InvalidSignature"], reasonOf(outcomeOf(result.exit, ["VerificationError"])))
          assert.strictEqual(result.after, "none")
        }
      ),
      20
    ))

  // Found by this file: NaN and negative strings or tuples used to become a zero duration.
  it.effect("DigimeConfig.make: NaN and negative durations in any form are refused", () =>
    check(
      fc.property(
        fc.constantFrom("refreshLeadTime" as const, "requestTimeout" as const, "tokenCacheTtl" as const),
        fc.oneof(
          fc.constant<Duration.DurationInput>(Number.NaN),
          fc.integer({ min: 1, max: 1_000_000 }).map((n): Duration.DurationInput => `${-n} seconds`),
          fc.integer({ min: 1, max: 1_000_000 }).map((n): Duration.DurationInput => [-n, 0]),
          fc.integer({ min: 1, max: 1_000_000 }).map((n): Duration.DurationInput => -n)
        ),
        (field, input) => {
          const exit = Effect.runSyncExit(
            DigimeConfig.make({ applicationId, contracts: [testContract.contract], [field]: input })
          )
          const error = failureOf(outcomeOf(exit, ["InvalidConfig"]))
          assert.strictEqual(error._tag === "InvalidConfig" && error.field, field)
        }
      ),
      200
    ))

  // Any UTF-16 code units, lone surrogates included (fast-check's strings are well-formed).
  const codeUnits = fc.string({
    unit: fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n)),
    maxLength: 12
  })
  const id = fc.oneof(text, codeUnits, fc.constantFrom("\ud800", "a\udfff", "x".repeat(1024), "x".repeat(1025)))

  it.effect("TokenKey.decode: any ids end in a key or InvalidOptions naming the bad one; toId is injective", () =>
    check(
      fc.property(fc.tuple(id, id), fc.tuple(id, id), ([userId, contract], [userId2, contract2]) => {
        // Non-empty, unpadded, at most 1024 UTF-16 units, well-formed (no lone surrogate).
        const valid = (s: string) => s !== "" && s.trim() === s && s.length <= 1024 && !/\p{Cs}/u.test(s)
        const outcome = outcomeOf(Effect.runSyncExit(TokenKey.decode(userId, contract)), ["InvalidOptions"])
        if (valid(userId) && valid(contract)) {
          assert.strictEqual(outcome._tag, "Success")
        } else {
          const error = failureOf(outcome)
          assert.strictEqual(error._tag === "InvalidOptions" && error.field, valid(userId) ? "contractId" : "userId")
        }
        if (valid(userId) && valid(contract) && valid(userId2) && valid(contract2)) {
          const a = TokenKey.make(userId, contract)
          const b = TokenKey.make(userId2, contract2)
          assert.strictEqual(TokenKey.toId(a) === TokenKey.toId(b), userId === userId2 && contract === contract2)
        }
      }),
      1000
    ))
})
