/**
 * One layer with the Node pieces of digime-effect: the `node:crypto` signer and an undici
 * `HttpClient`. Add a `DigimeConfig` and a `TokenStore` to get a `DigimeClient`.
 *
 * @example
 * import { DigimeClient, DigimeConfig, TokenStore } from "@digime-effect/core"
 * import { NodeDigime } from "@digime-effect/node"
 * import { Layer } from "effect"
 *
 * const DigimeLive = NodeDigime.layerClient.pipe(
 *   Layer.provide(DigimeConfig.layerConfig(DigimeConfig.fromEnv)),
 *   Layer.provide(TokenStore.layerMemory)
 * )
 *
 * @since 0.1.0
 */
import * as DigimeClient from "@digime-effect/core/DigimeClient"
import type { DigimeConfig } from "@digime-effect/core/DigimeConfig"
import type { InvalidContractKey } from "@digime-effect/core/DigimeError"
import type { Signer } from "@digime-effect/core/Signer"
import type { TokenStore } from "@digime-effect/core/TokenStore"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Layer from "effect/Layer"
import * as NodeSigner from "./NodeSigner.js"

/**
 * The Node signer and an undici HTTP client.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Signer | HttpClient.HttpClient> = Layer.merge(
  NodeSigner.layer,
  NodeHttpClient.layerUndici
)

/**
 * A `DigimeClient` on Node; needs a `DigimeConfig` and a `TokenStore`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient: Layer.Layer<DigimeClient.DigimeClient, InvalidContractKey, DigimeConfig | TokenStore> =
  DigimeClient.layer.pipe(Layer.provide(layer))
