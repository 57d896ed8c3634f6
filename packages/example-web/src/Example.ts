/**
 * Starts the example: a simulated digi.me over real HTTP and the example backend next to it, both
 * on 127.0.0.1, with token lifetimes short enough to watch a refresh and a reconnect happen.
 */
import { PendingAuthorizations, TokenKey, TokenStore } from "@digime-effect/core"
import { TestContract } from "@digime-effect/core/testing"
import { NodeDigime } from "@digime-effect/node"
import { NodeDigimeSimulator } from "@digime-effect/node/testing"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Duration, Effect, Layer } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"
import * as App from "./App.js"

export interface Options {
  readonly port?: number | undefined
  readonly accessTokenLifetime?: Duration.DurationInput | undefined
  readonly refreshTokenLifetime?: Duration.DurationInput | undefined
}

export interface Running {
  /** The example's own URL, `http://127.0.0.1:<port>`. */
  readonly appUrl: string
  readonly digime: NodeDigimeSimulator.Server
  readonly refreshes: App.RefreshCounter
}

const applicationId = "example-app"
const contractId = "example-contract"

export const start = (options: Options = {}): Effect.Effect<Running, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const contract = yield* TestContract.make(contractId)
    const digime = yield* NodeDigimeSimulator.make({
      applicationId,
      appName: "digime-effect example",
      contracts: [{ contractId, publicKeyPem: contract.publicKeyPem }],
      accessTokenLifetime: options.accessTokenLifetime ?? Duration.seconds(30),
      refreshTokenLifetime: options.refreshTokenLifetime ?? Duration.minutes(3),
      refreshTokenExpiry: "fixed"
    })
    const services = yield* Layer.build(
      NodeDigime.layer({
        applicationId,
        contracts: [contract.contract],
        baseUrl: digime.baseUrl,
        onboardUrl: digime.onboardUrl,
        refreshLeadTime: Duration.millis(500)
      }).pipe(Layer.provideMerge(TokenStore.layerMemory), Layer.merge(PendingAuthorizations.layerMemory))
    )
    const refreshes: App.RefreshCounter = { count: 0 }
    const router = App.make(TokenKey.make(App.userId, contractId), refreshes)
    let nodeServer: Http.Server | undefined
    const server = yield* NodeHttpServer.make(() => {
      nodeServer = Http.createServer()
      return nodeServer
    }, { host: "127.0.0.1", port: options.port ?? 0 })
    yield* Effect.addFinalizer(() => Effect.sync(() => nodeServer?.closeAllConnections()))
    yield* server.serve(Effect.provide(router, services))
    const address = server.address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
    return { appUrl: `http://127.0.0.1:${address.port}`, digime, refreshes }
  })
