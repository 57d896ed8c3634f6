/**
 * digime-effect on Node, as one layer: `Digime.layer` (configuration, client, token manager) on
 * the `node:crypto` signer and an undici `HttpClient`. Add the `TokenStore` of your choice (and a
 * `PendingAuthorizations` store for `Authorization`): in memory for a single process, or
 * `SqlTokenStore` / `SqlPendingAuthorizations` on PostgreSQL or SQLite.
 *
 * @example
 * import { PendingAuthorizations, TokenStore } from "@digime-effect/core"
 * import { NodeDigime } from "@digime-effect/node"
 * import { Layer } from "effect"
 *
 * // DIGIME_APPLICATION_ID, DIGIME_CONTRACT_ID, DIGIME_PRIVATE_KEY, ... (see DigimeConfig.fromEnv)
 * const DigimeLive = NodeDigime.layerConfig().pipe(
 *   Layer.provideMerge(TokenStore.layerMemory),
 *   Layer.merge(PendingAuthorizations.layerMemory)
 * )
 *
 * @since 0.1.0
 */
import * as Digime from "@digime-effect/core/Digime"
import type * as DigimeConfig from "@digime-effect/core/DigimeConfig"
import type { InvalidConfig, InvalidContractKey } from "@digime-effect/core/DigimeError"
import type { FileCipher } from "@digime-effect/core/FileCipher"
import type { Signer } from "@digime-effect/core/Signer"
import type { TokenStore } from "@digime-effect/core/TokenStore"
import type { Verifier } from "@digime-effect/core/Verifier"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Layer from "effect/Layer"
import * as UndiciClient from "./internal/undiciClient.js"
import * as WarmUp from "./internal/warmUp.js"
import * as NodeFileCipher from "./NodeFileCipher.js"
import * as NodeSigner from "./NodeSigner.js"
import * as NodeVerifier from "./NodeVerifier.js"

/**
 * The Node platform pieces alone: the `node:crypto` signer, verifier and file cipher (`node:zlib`
 * for decompression) and an `HttpClient` on an undici `Agent` of its own. That client is made for the
 * library's requests: it makes no span and follows no redirect, keeps each request's deadline (the
 * library's `requestTimeout`; undici's own header and body timeouts are off), and costs less per
 * request than `NodeHttpClient.layerUndici` (see BENCHMARKS.md). To send digi.me's requests through another
 * client (a proxy's dispatcher, say), provide `Digime.layer` with `NodeSigner.layer`,
 * `NodeFileCipher.layer` and that client instead.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPlatform: Layer.Layer<Signer | Verifier | FileCipher | HttpClient.HttpClient> = Layer.mergeAll(
  NodeSigner.layer,
  NodeVerifier.layer,
  NodeFileCipher.layer,
  Layer.scoped(HttpClient.HttpClient, UndiciClient.scoped)
)

// The library on the Node platform, warmed up once built (`DigimeConfig.warmUp`).
const onPlatform = <E, R>(
  digime: Layer.Layer<Digime.Services, E, R>
): Layer.Layer<Digime.Services, E, Exclude<R, Signer | Verifier | FileCipher | HttpClient.HttpClient>> =>
  Layer.effectDiscard(WarmUp.warmUp).pipe(Layer.provideMerge(digime), Layer.provide(layerPlatform))

/**
 * The library on Node from options; needs a `TokenStore`.
 *
 * Unless `warmUp` is `false`, building it also gets the first call ready (for at most
 * `warmUpTimeout`, 1 second by default): it opens the connection to digi.me's origin ahead and runs
 * one data call in memory, against a canned answer, so that the first call of the process costs
 * about what a later one does. Nothing is sent to digi.me, and a digi.me unreachable at start-up
 * does not fail the layer (see `DigimeConfig.Options.warmUp`). `layerPlatform` alone does not warm up.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: DigimeConfig.Options
): Layer.Layer<Digime.Services, InvalidConfig | InvalidContractKey, TokenStore> => onPlatform(Digime.layer(options))

/**
 * The library on Node from `Config` (by default `DIGIME_*` from the environment, see
 * `DigimeConfig.fromEnv`); needs a `TokenStore`. It warms up as `layer` does.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<DigimeConfig.Options> = Digime.fromEnv
): Layer.Layer<Digime.Services, ConfigError.ConfigError | InvalidConfig | InvalidContractKey, TokenStore> =>
  onPlatform(Digime.layerConfig(config))
