/**
 * The library as one layer: `DigimeConfig`, the `DigimeClient` (with its `KeySet`), the
 * `TokenManager` and the `TokenEvents` it publishes, built from options or from `Config`, with the `TokenKey.KeyTagger` of the
 * configured `keyTagSecret`. What stays yours to provide: the
 * platform's `Signer`, `FileCipher` and `HttpClient` (on Node, `NodeDigime.layer` from
 * `@digime-effect/node` provides all three) and the `TokenStore` of your choice. `Authorization` also needs a
 * `PendingAuthorizations` store.
 *
 * @example
 * import { Digime, FileCipher, Signer, TokenStore } from "@digime-effect/core"
 * import { FetchHttpClient } from "@effect/platform"
 * import { Layer } from "effect"
 *
 * const DigimeLive = Digime.layerConfig(Digime.fromEnv).pipe(
 *   Layer.provide(
 *     Layer.mergeAll(Signer.layerWebCrypto, FileCipher.layerWebCrypto, FetchHttpClient.layer, TokenStore.layerMemory)
 *   )
 * )
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as DigimeClient from "./DigimeClient.js"
import * as DigimeConfig from "./DigimeConfig.js"
import type { InvalidConfig, InvalidContractKey } from "./DigimeError.js"
import type { FileCipher } from "./FileCipher.js"
import type { Signer } from "./Signer.js"
import * as TokenEvents from "./TokenEvents.js"
import * as TokenKey from "./TokenKey.js"
import * as TokenManager from "./TokenManager.js"
import type { TokenStore } from "./TokenStore.js"

/**
 * What the layers provide.
 *
 * @since 0.1.0
 * @category models
 */
export type Services =
  | DigimeConfig.DigimeConfig
  | DigimeClient.DigimeClient
  | TokenManager.TokenManager
  | TokenEvents.TokenEvents

/**
 * What the layers need: the platform's signer, file cipher and HTTP client, and a token store.
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements = Signer | FileCipher | HttpClient.HttpClient | TokenStore

/**
 * The client and the token manager on a given configuration layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithConfig = <E, R>(
  config: Layer.Layer<DigimeConfig.DigimeConfig, E, R>
): Layer.Layer<Services, E | InvalidContractKey, R | Requirements> =>
  TokenManager.layer.pipe(
    Layer.provideMerge(TokenEvents.layer),
    Layer.provideMerge(DigimeClient.layer),
    Layer.provideMerge(keyTagger),
    Layer.provideMerge(config)
  )

// The configured `keyTagSecret`, for the library's own logs and spans and for the application's.
const keyTagger = Layer.unwrapEffect(
  Effect.map(DigimeConfig.DigimeConfig, (config) =>
    Option.match(config.keyTagger, {
      onNone: () => Layer.empty,
      onSome: (tagger) => Layer.succeedContext(Context.make(TokenKey.KeyTagger, tagger))
    }))
)

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: DigimeConfig.Options
): Layer.Layer<Services, InvalidConfig | InvalidContractKey, Requirements> =>
  layerWithConfig(DigimeConfig.layer(options))

/**
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<DigimeConfig.Options>
): Layer.Layer<Services, ConfigError.ConfigError | InvalidConfig | InvalidContractKey, Requirements> =>
  layerWithConfig(DigimeConfig.layerConfig(config))

/**
 * The options read from the environment (`DIGIME_*`): see `DigimeConfig.fromEnv`.
 *
 * @since 0.1.0
 * @category layers
 */
export const fromEnv: Config.Config<DigimeConfig.Options> = DigimeConfig.fromEnv
