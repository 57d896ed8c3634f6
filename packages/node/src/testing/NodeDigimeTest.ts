/**
 * The whole library on Node talking to a simulated digi.me over real HTTP on loopback: the
 * `node:crypto` signer, undici, and a `NodeDigimeSimulator` server started for the layer (its
 * consent pages can be opened in a browser). Everything else is `DigimeTest` of
 * `@digime-effect/core/testing`: `seedToken` and `authorize` work the same.
 *
 * The server reads the `Clock` of the fiber that builds it: use the layer in `it.live` tests, or
 * build it inside a test that runs on `TestClock`.
 *
 * @example
 * import { AutoRefresh, DigimeClient, TokenKey } from "@digime-effect/core"
 * import { DigimeTest } from "@digime-effect/core/testing"
 * import { NodeDigimeTest } from "@digime-effect/node/testing"
 * import { Effect } from "effect"
 *
 * const key = TokenKey.make("user-1", DigimeTest.contractId)
 * const program = Effect.gen(function*() {
 *   yield* DigimeTest.seedToken(key)
 *   const client = yield* DigimeClient.DigimeClient
 *   return yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
 * }).pipe(Effect.provide(NodeDigimeTest.layer({ server: { accessTokenLifetime: "1 minute" } })))
 *
 * @since 0.1.0
 */
import type { InvalidConfig, InvalidContractKey } from "@digime-effect/core/DigimeError"
import * as DigimeTest from "@digime-effect/core/testing/DigimeTest"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as Layer from "effect/Layer"
import * as NodeFileCipher from "../NodeFileCipher.js"
import * as NodeSigner from "../NodeSigner.js"
import * as NodeDigimeSimulator from "./NodeDigimeSimulator.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<E = never, R = never> extends Omit<DigimeTest.Options<E, R>, "simulator"> {
  /** More options of the server (lifetimes, rotation, latency, faults, host, port). */
  readonly server?: Partial<Omit<NodeDigimeSimulator.Options, "applicationId" | "contracts">> | undefined
}

/**
 * The library over undici and the `node:crypto` signer, on a simulated digi.me served over HTTP
 * for as long as the layer lives.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <E = never, R = never>(
  options: Options<E, R> = {}
): Layer.Layer<
  DigimeTest.Services | NodeDigimeSimulator.NodeDigimeSimulator,
  E | HttpServerError.ServeError | InvalidConfig | InvalidContractKey,
  R
> =>
  DigimeTest.layerWithSimulator(
    (setup) => Layer.merge(NodeDigimeSimulator.layer({ ...setup, ...options.server }), NodeHttpClient.layerUndici),
    { signer: NodeSigner.layer, fileCipher: NodeFileCipher.layer, ...options }
  )
