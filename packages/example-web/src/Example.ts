/**
 * Starts the example: a simulated digi.me over real HTTP and the example backend next to it, both
 * on 127.0.0.1, with token lifetimes short enough to watch a refresh and a reconnect happen.
 */
import { PendingAuthorizations, TokenStore } from "@digime-effect/core"
import { TestContract } from "@digime-effect/core/testing"
import { NodeDigime } from "@digime-effect/node"
import { NodeDigimeSimulator } from "@digime-effect/node/testing"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Config, Data, Duration, Effect, Layer, Option } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"
import * as App from "./App.js"

export interface Options {
  readonly port?: number | undefined
  /**
   * Where digi.me sends the browser back: this server's URL as the browser reaches it (behind a
   * proxy, the public one), ending with the callback route's path. Default
   * `http://127.0.0.1:<port>/callback`; never taken from a request's `Host` header.
   */
  readonly callbackUrl?: string | undefined
  readonly accessTokenLifetime?: Duration.DurationInput | undefined
  readonly refreshTokenLifetime?: Duration.DurationInput | undefined
}

/** `EXAMPLE_CALLBACK_URL`, when set: the `callbackUrl` option. */
export const callbackUrlConfig: Config.Config<string | undefined> = Config.url("EXAMPLE_CALLBACK_URL").pipe(
  Config.map((url) => url.href),
  Config.option,
  Config.map(Option.getOrUndefined)
)

export class InvalidCallbackUrl extends Data.TaggedError("InvalidCallbackUrl")<{ readonly message: string }> {}

export interface Running {
  /** The example's own URL, `http://127.0.0.1:<port>`. */
  readonly appUrl: string
  /** The callback URL given to digi.me. */
  readonly callbackUrl: string
  readonly digime: NodeDigimeSimulator.Server
  readonly refreshes: App.RefreshCounter
}

const applicationId = "example-app"
const contractId = "example-contract"

const parseCallbackUrl = (value: string) => {
  const url = URL.canParse(value) ? new URL(value) : undefined
  return url !== undefined && (url.protocol === "http:" || url.protocol === "https:") && url.search === "" &&
      url.hash === ""
    ? Effect.succeed(url)
    : Effect.fail(new InvalidCallbackUrl({ message: `callbackUrl must be an http(s) URL without query: ${value}` }))
}

export const start = (options: Options = {}): Effect.Effect<Running, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const configured = options.callbackUrl === undefined ? undefined : yield* parseCallbackUrl(options.callbackUrl)
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
    let nodeServer: Http.Server | undefined
    const server = yield* NodeHttpServer.make(() => {
      nodeServer = Http.createServer()
      return nodeServer
    }, { host: "127.0.0.1", port: options.port ?? 0 })
    yield* Effect.addFinalizer(() => Effect.sync(() => nodeServer?.closeAllConnections()))
    const address = server.address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
    const appUrl = `http://127.0.0.1:${address.port}`
    const callbackUrl = configured ?? new URL(`${appUrl}/callback`)
    const refreshes: App.RefreshCounter = { count: 0 }
    const router = App.make({ contractId, callbackUrl, refreshes })
    yield* server.serve(Effect.provide(router, services))
    return { appUrl, callbackUrl: callbackUrl.href, digime, refreshes }
  })
