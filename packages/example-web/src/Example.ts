/**
 * Starts the example: a simulated digi.me over real HTTP and the example backend next to it, both
 * on 127.0.0.1, with token lifetimes short enough to watch a refresh and a reconnect happen. The
 * simulated digi.me knows a read contract and a write contract of the same application; when a
 * user first connects, a few files are put into their simulated library, as digi.me would have
 * synced them from the user's services. `TokenUpkeep` runs beside the library, and `/operator`
 * shows the state of every stored token and the last token events.
 */
import { PendingAuthorizations, TokenStore, TokenUpkeep } from "@digime-effect/core"
import type { DigimeSimulator } from "@digime-effect/core/testing"
import { TestContract } from "@digime-effect/core/testing"
import { NodeDigime } from "@digime-effect/node"
import { NodeDigimeSimulator } from "@digime-effect/node/testing"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Config, Data, Duration, Effect, Layer, Option } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"
import * as App from "./App.js"
import * as Operator from "./Operator.js"

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
  /** What a user's library holds once they connect; default `libraryFiles`. */
  readonly libraryFiles?: ReadonlyArray<DigimeSimulator.FileInput> | undefined
}

/**
 * The files put into a user's simulated library when they first connect: a post, step counts
 * (gzip-compressed, as digi.me serves some files) and a profile.
 */
export const libraryFiles: ReadonlyArray<DigimeSimulator.FileInput> = [
  {
    name: "posts.json",
    content: JSON.stringify([
      { id: 1, text: "Hello from a simulated social network" },
      { id: 2, text: "Markup stays text: <em>not emphasised</em> & <script>alert(1)</script>" }
    ])
  },
  { name: "steps.json", content: JSON.stringify({ steps: [4210, 8733, 10512] }), compression: "gzip" },
  { name: "profile.json", content: JSON.stringify({ name: "Alice", city: "Ljubljana" }) }
]

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
/** The read contract: Connect, the accounts and the files. */
export const contractId = "example-contract"
/** The write contract: "Push a note". */
export const writeContractId = "example-write-contract"

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
    const writeContract = yield* TestContract.make(writeContractId)
    const digime = yield* NodeDigimeSimulator.make({
      applicationId,
      appName: "digime-effect example",
      contracts: [
        { contractId, publicKeyPem: contract.publicKeyPem },
        { contractId: writeContractId, publicKeyPem: writeContract.publicKeyPem, accessType: "w" }
      ],
      accessTokenLifetime: options.accessTokenLifetime ?? Duration.seconds(30),
      refreshTokenLifetime: options.refreshTokenLifetime ?? Duration.minutes(3),
      refreshTokenExpiry: "fixed"
    })
    const services = yield* Layer.build(
      NodeDigime.layer({
        applicationId,
        contracts: [contract.contract, writeContract.contract],
        baseUrl: digime.baseUrl,
        onboardUrl: digime.onboardUrl,
        refreshLeadTime: Duration.millis(500)
      }).pipe(
        // Upkeep warns of refresh tokens about to expire and marks the users who must reconnect.
        // It leaves access-token refreshes to the callers here, so that you can watch one happen
        // under withAutoRefresh; a real deployment keeps `refreshAhead` on.
        (library) =>
          Layer.provideMerge(
            TokenUpkeep.layer({
              interval: "1 second",
              refreshAhead: false,
              keepAlive: "warn",
              keepAliveWithin: "1 minute"
            }),
            library
          ),
        Layer.provideMerge(TokenStore.layerMemory),
        Layer.merge(PendingAuthorizations.layerMemory)
      )
    )
    const operator = yield* Effect.provide(Operator.makeRecorder, services)
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
    // Once per digi.me library: a reconnect that lands in the same library finds its files there.
    const seeded = new Set<string>()
    const files = options.libraryFiles ?? libraryFiles
    const onConnected = (digimeUserId: string) =>
      seeded.has(digimeUserId) ? Effect.void : digime.simulator.addFiles(digimeUserId, files).pipe(
        Effect.tap(() => Effect.sync(() => seeded.add(digimeUserId))),
        Effect.orDie
      )
    const router = App.make({
      contractId,
      writeContractId,
      callbackUrl,
      refreshes,
      pollInterval: Duration.millis(200),
      onConnected,
      operator
    })
    yield* server.serve(Effect.provide(router, services))
    return { appUrl, callbackUrl: callbackUrl.href, digime, refreshes }
  })
