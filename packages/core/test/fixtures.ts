/**
 * Shared set-up of the core tests: one test contract (key generation is slow, so it is made once
 * per file), and the layer stack of a client talking to the simulated digi.me.
 */
import { AutoRefresh, DigimeClient, type DigimeError, TokenKey, TokenManager, TokenStore } from "@digime-effect/core"
import type { DataProtocol, DigimeConfig, DigimeRequest } from "@digime-effect/core"
import { DigimeSimulator, DigimeTest, type TestContract } from "@digime-effect/core/testing"
import { HttpClientRequest, HttpClientResponse } from "@effect/platform"
import { assert } from "@effect/vitest"
import { Duration, Effect, Encoding, Fiber, Layer, Option, TestClock, Tracer } from "effect"

export const applicationId = DigimeTest.applicationId
export const contractId = DigimeTest.contractId
export const callbackUrl = DigimeTest.callbackUrl

export const testContract: TestContract.TestContract = await Effect.runPromise(DigimeTest.defaultContract)

export const key = TokenKey.make("user-1", contractId)

export type Services = DigimeTest.Services

export interface StackOptions {
  readonly simulator?: Partial<DigimeSimulator.Options>
  readonly config?: Partial<DigimeConfig.Options>
  readonly store?: Layer.Layer<TokenStore.TokenStore>
}

/** The library on a fresh simulated digi.me (`DigimeTest.layer`), with this file's contract. */
export const stack = (
  options: StackOptions = {}
): Layer.Layer<Services, DigimeError.InvalidConfig | DigimeError.InvalidContractKey> => {
  const { contracts, ...simulator } = options.simulator ?? {}
  const { contracts: configContracts, ...config } = options.config ?? {}
  return DigimeTest.layer({
    // Several contracts: the test lists them on both sides (the simulator's are public keys).
    contracts: configContracts === undefined
      ? [testContract]
      : configContracts.map((contract) => ({
        contract,
        publicKeyPem: contracts?.find((c) => c.contractId === contract.contractId)?.publicKeyPem ?? ""
      })),
    simulator,
    config,
    store: options.store
  })
}

/** Authorize → consent → callback → exchange, storing the token under `forKey`. */
export const authorize = (forKey: TokenKey.TokenKey = key) => DigimeTest.authorize(forKey)

/** The stored token, which must exist. */
export const stored = (forKey: TokenKey.TokenKey = key) =>
  Effect.flatMap(TokenStore.TokenStore, (store) => store.get(forKey)).pipe(Effect.map(Option.getOrThrow))

export const stats = Effect.flatMap(DigimeSimulator.DigimeSimulator, (simulator) => simulator.stats)

export const totalRequests = Effect.map(
  stats,
  (s) => Object.values(s.requests).reduce((n: number, count) => n + (count as number), 0)
)

/**
 * Moves the TestClock forward by at most `total`, in `steps` equal steps, until `fiber` is done, then
 * joins it. One large step can run ahead of a fiber still waiting for real work (Web Crypto, the
 * event loop) on a loaded machine, so that its later sleeps are never reached; small steps let the
 * fiber catch up, and the simulated time it may take is the same as before.
 */
export const joinAdvancing = <A, E>(fiber: Fiber.RuntimeFiber<A, E>, total: Duration.DurationInput, steps = 50) =>
  Effect.gen(function*() {
    const step = Duration.unsafeDivide(Duration.decode(total), steps)
    for (let i = 0; i < steps && fiber.unsafePoll() === null; i++) yield* TestClock.adjust(step)
    return yield* Fiber.join(fiber)
  })

/**
 * Moves the TestClock forward in steps of `step`, at most `total`, until `done` holds, and answers
 * whether it does: like `joinAdvancing`, for work that runs in the background (a refresh ahead, a
 * daemon) rather than in a fiber the test holds.
 */
export const advanceUntil = <E, R>(
  done: Effect.Effect<boolean, E, R>,
  total: Duration.DurationInput,
  step: Duration.DurationInput = "1 second"
) =>
  Effect.gen(function*() {
    const steps = Math.ceil(Duration.toMillis(Duration.decode(total)) / Duration.toMillis(Duration.decode(step)))
    for (let i = 0; i < steps; i++) {
      if (yield* done) return true
      yield* TestClock.adjust(step)
    }
    return yield* done
  })

/** `readAccounts` of the `DigimeClient`: the data call the tests wrap with `withAutoRefresh`. */
export const readAccounts = (credentials: DataProtocol.Credentials) =>
  Effect.flatMap(DigimeClient.DigimeClient, (client) => client.readAccounts(credentials))

/** A token manager of another process: the same store (or `store`) and client, its own memory. */
export const otherProcess = (store?: TokenStore.Service) =>
  store === undefined
    ? TokenManager.make
    : TokenManager.make.pipe(Effect.provideService(TokenStore.TokenStore, store))

/** `readAccounts` under `withAutoRefresh` of the key, through `manager`. */
export const readAs = (manager: TokenManager.Service) =>
  AutoRefresh.withAutoRefresh(key, readAccounts).pipe(Effect.provideService(TokenManager.TokenManager, manager))

/** digi.me counted no replay of a refresh token and revoked no grant. */
export const noReplay = Effect.gen(function*() {
  const s = yield* stats
  assert.strictEqual(s.replays, 0)
  assert.strictEqual(s.revocations, 0)
})

/** The memory store, counting its reads in `counter`. */
export const countingStore = (counter: { gets: number }) =>
  Layer.effect(
    TokenStore.TokenStore,
    Effect.map(TokenStore.makeMemory, (inner) =>
      ({
        ...inner,
        get: (k: TokenKey.TokenKey) =>
          Effect.suspend(() => {
            counter.gets++
            return inner.get(k)
          })
      }) satisfies TokenStore.Service)
  )

/** digi.me's answer to `request` (by default a GET), a JSON body (or text as it is, or no body for ""). */
export const answerTo = (
  request: DigimeRequest.Request | undefined,
  status: number,
  body: unknown,
  headers: Record<string, string> = {}
) =>
  HttpClientResponse.fromWeb(
    request?.request ?? HttpClientRequest.get("https://api.example/"),
    new Response(body === "" ? null : typeof body === "string" ? body : JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json", ...headers }
    })
  )

/** The JSON body a request builder made, or the tag of its body when it is not JSON bytes. */
export const jsonBodyOf = (request: DigimeRequest.Request): unknown =>
  request.request.body._tag === "Uint8Array"
    ? JSON.parse(new TextDecoder().decode(request.request.body.body))
    : request.request.body._tag

/** A 2048-bit RSA-PSS (SHA-512) key pair, and its public key as a PEM, for tokens a key set verifies. */
export const signingPair = await globalThis.crypto.subtle.generateKey(
  { name: "RSA-PSS", hash: "SHA-512", modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1) },
  true,
  ["sign", "verify"]
)
const signingSpki = Encoding.encodeBase64(
  new Uint8Array(await globalThis.crypto.subtle.exportKey("spki", signingPair.publicKey))
)
export const signingPublicPem = `-----BEGIN PUBLIC KEY-----\n${
  signingSpki.replace(/.{1,64}/g, "$&\n")
}-----END PUBLIC KEY-----\n`

/** A tracer that records the name of every span it makes, and the name of every attribute set on one. */
export const recordingTracer = (names: Array<string>, attributes: Array<string>): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      names.push(name)
      const values = new Map<string, unknown>()
      return {
        _tag: "Span",
        name,
        spanId: `${names.length}`,
        traceId: "trace",
        parent,
        context,
        status: { _tag: "Started", startTime },
        attributes: values,
        links,
        sampled: true,
        kind,
        end: () => {},
        attribute: (key, value) => {
          attributes.push(key)
          values.set(key, value)
        },
        event: () => {},
        addLinks: () => {}
      }
    },
    context: (f) => f()
  })
