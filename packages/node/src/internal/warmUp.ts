/**
 * The warm-up of `NodeDigime.layer` (`DigimeConfig.warmUp`): what the first call of a process
 * would otherwise do for the first time, done while the layer is built, so that the first call
 * costs about what a later one does (see BENCHMARKS.md, section 3, "the first call after the layer
 * is built"):
 *
 * - the connection to the origin of `baseUrl` is opened ahead (TCP, and TLS for https), to be taken
 *   by the first request that needs one (`UndiciClient.preconnectOf`); it opens while the rest runs;
 * - one data call (`readAccounts`, with a made-up access token) runs on a client of its own, on the
 *   layer's configuration, signer and cipher, whose HTTP client is an undici `Client` on a socket
 *   in memory that answers `200 []`: the code of a call (signing, the exchange, undici's request and
 *   response path, the decoding of an answer) and undici's HTTP parser (WebAssembly, compiled on
 *   first use) are then ready, and nothing leaves the process;
 * - every other contract's key signs once (the first signature with a key costs more than the next).
 *
 * No request reaches digi.me, no store is read, no span is made (the call runs under Effect's own
 * tracer), no metric moves (a data call records none). The whole is bounded by `warmUpTimeout`, kept
 * by a timer of its own (as the undici client keeps its deadlines, so a `TestClock` cannot hold a
 * layer back); past it the layer is built anyway, and a connection still opening is kept if it opens
 * in time. A failure only logs, at debug level, without anything secret (the origin and an error
 * code).
 */
import type { Contract } from "@digime-effect/core/Contract"
import * as DigimeClient from "@digime-effect/core/DigimeClient"
import { DigimeConfig } from "@digime-effect/core/DigimeConfig"
import type { FileCipher } from "@digime-effect/core/FileCipher"
import { Signer } from "@digime-effect/core/Signer"
import * as Undici from "@effect/platform-node/Undici"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Net from "node:net"
import { Duplex } from "node:stream"
import * as UndiciClient from "./undiciClient.js"

// What the socket in memory answers: a list of one account (made up), so that decoding an account
// is ready too.
const accounts = JSON.stringify([{
  id: "warm-up",
  reference: "warm-up",
  type: "USER",
  createdDate: 0,
  updatedDate: 0,
  serviceGroupId: 1,
  serviceGroupName: "warm-up",
  serviceTypeId: 1,
  serviceTypeName: "warm-up",
  serviceTypeReference: "warm-up",
  sourceId: 1,
  accessTokenStatus: { authorized: true }
}])
const answer = Buffer.from(
  `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${accounts.length}\r\n\r\n${accounts}`,
  "latin1"
)

/**
 * A socket in memory that answers each request head written to it with `answer`: what undici's
 * `Client` uses of a `net.Socket` (the settings its connector would make are no-ops here).
 */
const answeringSocket = (): Net.Socket => {
  let head = ""
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      head += chunk.toString("latin1")
      if (head.includes("\r\n\r\n")) {
        head = ""
        socket.push(answer)
      }
      callback()
    }
  })
  const self = () => socket
  // Not a `net.Socket`: only what undici's client calls of one.
  return Object.assign(socket, {
    ref: self,
    unref: self,
    setNoDelay: self,
    setKeepAlive: self,
    setTimeout: self
  }) as unknown as Net.Socket
}

/**
 * An undici `Agent` (as the layer's client has, so that its way to a connection is ready too) whose
 * connections are `answeringSocket`s: nothing leaves the process.
 */
const inMemoryAgent = (): Undici.Agent =>
  new Undici.Agent({
    connect: (_options, callback) => {
      const socket = answeringSocket()
      // undici expects its callback once the connector has returned.
      queueMicrotask(() => callback(null, socket))
    }
  })

// The tracer of a program that installed none: under it the library makes no span.
const noSpans = Effect.runSync(Effect.tracer)

/** One data call of `contract` on a client whose answers come from `inMemoryAgent`. */
const dryRun = (contract: Contract) =>
  Effect.acquireUseRelease(
    Effect.sync(inMemoryAgent),
    (client) =>
      Effect.flatMap(
        DigimeClient.DigimeClient,
        (digime) => digime.readAccounts({ contractId: contract.contractId, accessToken: Redacted.make("warm-up") })
      ).pipe(
        Effect.provide(
          DigimeClient.layer.pipe(Layer.provide(Layer.succeed(HttpClient.HttpClient, UndiciClient.make(client))))
        ),
        Effect.withTracer(noSpans)
      ),
    (client) => Effect.promise(() => client.destroy())
  ).pipe(
    Effect.catchAllCause((cause) =>
      Effect.logDebug("digi.me warm-up: the call in memory failed").pipe(
        Effect.annotateLogs("error.type", errorType(Cause.squash(cause)))
      )
    )
  )

const errorType = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string"
    ? error._tag
    : error instanceof Error
    ? error.name
    : typeof error

const errorCode = (error: unknown): string => {
  const cause = error instanceof Error && error.cause !== undefined ? error.cause : error
  return typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : errorType(cause)
}

/**
 * Starts opening the connection to `origin` ahead, when the client can (a client of
 * `UndiciClient.scoped`); gives the effect that waits for it. Interrupting the wait leaves the
 * connection opening, to be used if it opens in time.
 */
const connectAhead = (client: HttpClient.HttpClient, origin: URL): Effect.Effect<Effect.Effect<void>> =>
  Effect.sync(() => {
    const preconnect = UndiciClient.preconnectOf(client)
    if (preconnect === undefined) return Effect.void
    // Settled either way, so that nothing is left unhandled once the wait is interrupted.
    const opened = preconnect(origin).then(() => undefined, (error: unknown) => error ?? "failed")
    return Effect.flatMap(
      Effect.promise(() => opened),
      (error) =>
        error === undefined ?
          Effect.void :
          Effect.logDebug("digi.me warm-up: the connection could not be opened ahead").pipe(
            Effect.annotateLogs({ "server.address": origin.origin, "error.type": errorCode(error) })
          )
    )
  })

// Node's timers take at most 2^31 - 1 ms.
const maxTimerMillis = 2 ** 31 - 1

/** `self`, or its interruption once `timeout` has passed on a timer of its own. */
const within =
  (timeout: Duration.Duration) => <R>(self: Effect.Effect<void, never, R>): Effect.Effect<void, never, R> =>
    Effect.race(
      self,
      Effect.async<void>((resume) => {
        const timer = setTimeout(
          () =>
            resume(Effect.logDebug("digi.me warm-up: not over within warmUpTimeout; the layer is built without it")),
          Math.min(Duration.toMillis(timeout), maxTimerMillis)
        )
        return Effect.sync(() => clearTimeout(timer))
      })
    )

/**
 * The warm-up, when `DigimeConfig.warmUp` is on. It never fails.
 *
 * @internal
 */
export const warmUp: Effect.Effect<void, never, DigimeConfig | Signer | FileCipher | HttpClient.HttpClient> = Effect
  .gen(function*() {
    const config = yield* DigimeConfig
    if (!config.warmUp) return
    const signer = yield* Signer
    const origin = new URL(config.baseUrl)
    const [first, ...others] = config.contracts.values()
    const local = Effect.zipRight(
      first === undefined ? Effect.void : dryRun(first),
      Effect.forEach(others, (contract) => Effect.catchAllCause(signer.sign(contract, {}), () => Effect.void), {
        discard: true
      })
    )
    // The connection opens while the rest runs.
    const connected = yield* connectAhead(yield* HttpClient.HttpClient, origin)
    yield* Effect.all([connected, local], {
      concurrency: "unbounded",
      discard: true
    }).pipe(within(config.warmUpTimeout))
  })
