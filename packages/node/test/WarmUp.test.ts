/**
 * The warm-up of `NodeDigime.layer` (`DigimeConfig.warmUp`): while the layer is built, the
 * connection to digi.me's origin is opened ahead (and taken by the first call) and one data call
 * runs in memory, without a byte reaching digi.me; a digi.me unreachable or slow at start-up
 * neither fails the layer nor holds it back past `warmUpTimeout`, and the first call then fails as
 * it would without a warm-up. Connections are counted by a TCP relay in front of the simulated
 * digi.me.
 */
import type { DigimeConfig } from "@digime-effect/core"
import { DigimeClient, TokenStore } from "@digime-effect/core"
import { TestContract } from "@digime-effect/core/testing"
import { NodeDigime } from "@digime-effect/node"
import { NodeDigimeSimulator } from "@digime-effect/node/testing"
import { assert, describe, it } from "@effect/vitest"
import { Context, type Duration, Effect, Exit, Layer, List, Logger, LogLevel, Redacted, Scope } from "effect"
import * as DiagnosticsChannel from "node:diagnostics_channel"
import * as Net from "node:net"

const applicationId = "app-warm-up"
const contractId = "contract-warm-up"
const testContract = await Effect.runPromise(TestContract.make(contractId))

/** A TCP server on loopback, closed (its connections cut) with the scope. */
const listen = (onConnection: (socket: Net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Net.Server; readonly port: number; readonly sockets: Set<Net.Socket> }>(
      (resume) => {
        const sockets = new Set<Net.Socket>()
        const server = Net.createServer((socket) => {
          sockets.add(socket)
          socket.on("close", () => sockets.delete(socket))
          socket.on("error", () => {})
          onConnection(socket)
          // Reading, so that the other side's close is seen.
          if (socket.listenerCount("data") === 0) socket.resume()
        })
        server.listen(0, "127.0.0.1", () =>
          resume(Effect.succeed({ server, port: (server.address() as Net.AddressInfo).port, sockets })))
      }
    ),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) {
          socket.destroy()
        }
        server.close(() =>
          resume(Effect.void)
        )
      })
  )

/**
 * The simulated digi.me behind a relay that counts the connections made to it and the bytes
 * clients send through them.
 */
const relayedDigime = Effect.gen(function*() {
  const server = yield* NodeDigimeSimulator.make({
    applicationId,
    contracts: [{ contractId, publicKeyPem: testContract.publicKeyPem }]
  }).pipe(Effect.orDie)
  const target = new URL(server.origin)
  const counts = { connections: 0, closed: 0, bytesIn: 0 }
  const relay = yield* listen((client) => {
    counts.connections++
    const upstream = Net.connect(Number(target.port), target.hostname)
    upstream.on("error", () => client.destroy())
    client.on("data", (chunk: Buffer) => {
      counts.bytesIn += chunk.length
    })
    client.pipe(upstream).pipe(client)
    client.on("close", () => {
      counts.closed++
      upstream.destroy()
    })
  })
  return { server, counts, baseUrl: `http://127.0.0.1:${relay.port}/v1.7/` }
})

const options = (baseUrl: string, more: Partial<DigimeConfig.Options> = {}): DigimeConfig.Options => ({
  applicationId,
  contracts: [testContract.contract],
  baseUrl,
  onboardUrl: "http://127.0.0.1:1/apps/saas/",
  ...more
})

/** Builds `NodeDigime.layer` in the test's scope: its services and how long building took. */
const build = (config: DigimeConfig.Options) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer((exit) => Scope.close(scope, exit))
    const start = performance.now()
    const context = yield* Layer.buildWithScope(
      NodeDigime.layer(config).pipe(Layer.provide(TokenStore.layerMemory)),
      scope
    )
    return { context, millis: performance.now() - start, scope }
  })

/** The requests undici sends while `effect` runs, from this process (in memory or not). */
const sentDuring = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const sent: Array<{ readonly method: string; readonly path: string; readonly headers: string }> = []
    const onSend = (message: unknown) => {
      const { headers, request } = message as {
        readonly request: { readonly method: string; readonly path: string }
        readonly headers: string
      }
      sent.push({ method: request.method, path: request.path, headers })
    }
    DiagnosticsChannel.subscribe("undici:client:sendHeaders", onSend)
    const result = yield* Effect.ensuring(
      effect,
      Effect.sync(() => DiagnosticsChannel.unsubscribe("undici:client:sendHeaders", onSend))
    )
    return { result, sent }
  })

/** Waits (polling, for 5 seconds at most) until `done()`. */
const until = (done: () => boolean, otherwise: string) =>
  Effect.async<void>((resume) => {
    const poll = setInterval(() => {
      if (done()) {
        clearInterval(poll)
        resume(Effect.void)
      }
    }, 5)
    return Effect.sync(() => clearInterval(poll))
  }).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error(otherwise) }))

/** The log lines of `effect`, at every level. */
const logsOf = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<
      { readonly level: string; readonly message: string; readonly annotations: Record<string, unknown> }
    > = []
    const logger = Logger.make(({ annotations, logLevel, message }) => {
      lines.push({
        level: logLevel.label,
        message: List.toArray(message as List.List<unknown>).map(String).join(" "),
        annotations: Object.fromEntries(annotations)
      })
    })
    const result = yield* effect.pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
      Logger.withMinimumLogLevel(LogLevel.All)
    )
    return { result, lines }
  })

describe("NodeDigime.layer's warm-up", () => {
  it.scopedLive("opens the connection ahead, sends nothing, and the first call takes that connection", () =>
    Effect.gen(function*() {
      const digime = yield* relayedDigime
      const { lines, result: { result: built, sent } } = yield* logsOf(sentDuring(build(options(digime.baseUrl))))
      // Built: one connection, not a byte on it, no request at digi.me; one call ran in memory,
      // signed with the contract's key, and the warm-up went through without a hitch.
      assert.deepStrictEqual(lines.filter(({ message }) => message.includes("warm-up")), [])
      yield* until(() => digime.counts.connections > 0, "no connection was opened ahead")
      assert.strictEqual(digime.counts.connections, 1)
      assert.strictEqual(digime.counts.bytesIn, 0)
      assert.strictEqual(Object.values((yield* digime.server.simulator.stats).requests).reduce((a, b) => a + b), 0)
      assert.deepStrictEqual(sent.map(({ method, path }) => `${method} ${path}`), [
        "GET /v1.7/permission-access/accounts"
      ])
      assert.match(sent[0]!.headers, /authorization: Bearer [\w-]+\.[\w-]+\.[\w-]+\r\n/i)

      const client = Context.get(built.context, DigimeClient.DigimeClient)
      const details = yield* client.getContractDetails({ contractId })
      assert.strictEqual(details.id, contractId)
      assert.strictEqual(digime.counts.connections, 1)
      assert.isAbove(digime.counts.bytesIn, 0)
      assert.strictEqual((yield* digime.server.simulator.stats).requests.contract, 1)
    }))

  it.scopedLive("warmUp: false opens nothing at build: the first call connects", () =>
    Effect.gen(function*() {
      const digime = yield* relayedDigime
      const { result: built, sent } = yield* sentDuring(build(options(digime.baseUrl, { warmUp: false })))
      assert.strictEqual(digime.counts.connections, 0)
      assert.deepStrictEqual(sent, [])
      const client = Context.get(built.context, DigimeClient.DigimeClient)
      yield* client.getContractDetails({ contractId })
      assert.strictEqual(digime.counts.connections, 1)
    }))

  it.scopedLive("the connection opened ahead is closed with the layer when no call took it", () =>
    Effect.gen(function*() {
      const digime = yield* relayedDigime
      const built = yield* build(options(digime.baseUrl))
      yield* until(() => digime.counts.connections > 0, "no connection was opened ahead")
      assert.strictEqual(digime.counts.connections, 1)
      assert.strictEqual(digime.counts.closed, 0)
      yield* Scope.close(built.scope, Exit.void)
      yield* until(() => digime.counts.closed === 1, "the connection stayed open")
    }))

  it.scopedLive("a digi.me refusing connections at start-up fails neither the layer nor the first call's typed error", () =>
    Effect.gen(function*() {
      // A port nothing listens on.
      const closedPort = yield* Effect.scoped(Effect.map(listen(() => {}), ({ port }) => port))
      const baseUrl = `http://127.0.0.1:${closedPort}/v1.7/`
      const firstCall = (context: Context.Context<DigimeClient.DigimeClient>) =>
        Effect.flip(
          Context.get(context, DigimeClient.DigimeClient).readAccounts({
            contractId,
            accessToken: Redacted.make("a-token")
          })
        )
      // A refusal ends the warm-up at once: with a minute to wait, the layer is built long before
      // (wall time, with a wide margin for a loaded machine).
      const { lines, result: warm } = yield* logsOf(build(options(baseUrl, { warmUpTimeout: "60 seconds" })))
      assert.isBelow(warm.millis, 20_000)
      const cold = yield* build(options(baseUrl, { warmUp: false }))
      const [withWarmUp, without] = yield* Effect.all([firstCall(warm.context), firstCall(cold.context)], {
        concurrency: 2
      })
      assert.strictEqual(withWarmUp._tag, "RequestError")
      assert.strictEqual(withWarmUp._tag, without._tag)
      assert.strictEqual(
        (withWarmUp as { readonly reason?: string }).reason,
        (without as { readonly reason?: string }).reason
      )
      // Logged at debug level, with the origin and the error code only.
      const line = lines.find(({ message }) => message.includes("could not be opened ahead"))
      assert.isDefined(line)
      assert.strictEqual(line!.level, "DEBUG")
      assert.strictEqual(line!.annotations["error.type"], "ECONNREFUSED")
      assert.strictEqual(line!.annotations["server.address"], `http://127.0.0.1:${closedPort}`)
      const secret = Redacted.value(testContract.contract.privateKey)
      for (const { annotations, message } of lines) {
        assert.notInclude(message + JSON.stringify(annotations), secret.slice(40, 80))
        assert.notInclude(message + JSON.stringify(annotations), "BEGIN")
      }
    }))

  it.scopedLive("a connection that does not open in time holds the layer back for warmUpTimeout at most", () =>
    Effect.gen(function*() {
      // Accepts TCP connections and never answers: a TLS handshake with it never ends.
      const silent = yield* listen(() => {})
      const baseUrl = `https://127.0.0.1:${silent.port}/v1.7/`
      // Wall time: the layer waits for the timeout, and not for undici's own connect timeout (10 s);
      // the upper bounds leave a wide margin for a loaded machine.
      const bounded = yield* build(options(baseUrl, { warmUpTimeout: "200 millis" }))
      assert.isAtLeast(bounded.millis, 150)
      assert.isBelow(bounded.millis, 5_000)
      const notWaiting = yield* build(options(baseUrl, { warmUpTimeout: 0 }))
      assert.isBelow(notWaiting.millis, 5_000)
      // Both handshakes go on in the background.
      yield* until(() => silent.sockets.size === 2, "a connection was not made")
      // Closing the layers cuts the handshakes still in progress.
      yield* Scope.close(bounded.scope, Exit.void)
      yield* Scope.close(notWaiting.scope, Exit.void)
      yield* until(() => silent.sockets.size === 0, "a handshake stayed open")
    }))

  it.effect("a bad warmUp or warmUpTimeout fails the layer with InvalidConfig", () =>
    Effect.gen(function*() {
      const failure = (more: Partial<DigimeConfig.Options>) =>
        Effect.flip(Layer.build(
          NodeDigime.layer(options("http://127.0.0.1:1/v1.7/", more)).pipe(Layer.provide(TokenStore.layerMemory))
        )).pipe(Effect.scoped)
      const notBoolean = yield* failure({ warmUp: "yes" as unknown as boolean })
      assert.strictEqual(notBoolean._tag, "InvalidConfig")
      assert.strictEqual((notBoolean as { readonly field?: string }).field, "warmUp")
      for (const warmUpTimeout of [-1, "-2 seconds", Infinity, "soon"]) {
        const error = yield* failure({ warmUpTimeout: warmUpTimeout as Duration.DurationInput })
        assert.strictEqual(error._tag, "InvalidConfig")
        assert.strictEqual((error as { readonly field?: string }).field, "warmUpTimeout")
      }
    }))
})
