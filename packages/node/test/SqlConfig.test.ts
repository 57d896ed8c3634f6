/**
 * `SqlTokenStore.layerConfig` and `SqlPendingAuthorizations.layerConfig`: the stores' options,
 * encryption keys included, read from `Config` (the environment by default).
 */
import { TokenKey, TokenStore } from "@digime-effect/core"
import type { UserAccessToken } from "@digime-effect/core"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Option } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import * as SqlPendingAuthorizations from "../src/SqlPendingAuthorizations.js"
import * as SqlTokenStore from "../src/SqlTokenStore.js"

interface SuiteModule {
  readonly token: (access: string, refresh: string) => UserAccessToken.UserAccessToken
}
const suitePath = "../../core/test/TokenStoreSuite.js"
const { token }: SuiteModule = await import(suitePath)

const dir = mkdtempSync(Path.join(tmpdir(), "digime-sqlconfig-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const Sqlite = SqliteClient.layer({ filename: Path.join(dir, "config.db") })

const key32 = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64")

const withEnv = (env: Record<string, string>) =>
  Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

// The stores of `layerConfig` under `env`, on the shared SQLite file.
const stores = (env: Record<string, string>) =>
  Layer.mergeAll(SqlTokenStore.layerConfig(), SqlPendingAuthorizations.layerConfig()).pipe(
    Layer.provideMerge(Sqlite),
    Layer.provide(withEnv(env))
  )

const rawToken = (table: string, key: TokenKey.TokenKey) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<{ readonly token: string }>`SELECT token FROM ${sql(table)} WHERE id = ${TokenKey.toId(key)}`
  ).pipe(Effect.map((rows) => rows[0]!.token))

const key = TokenKey.make("user-1", "contract-1")

describe("SqlTokenStore.layerConfig", () => {
  it.effect("without settings: the default tables, in clear", () =>
    Effect.gen(function*() {
      const store = yield* TokenStore.TokenStore
      yield* store.set(key, token("a1", "r1"))
      assert.isTrue((yield* rawToken("digime_tokens", key)).startsWith("{"))
    }).pipe(Effect.provide(stores({}))))

  it.effect("a table and one key: sealed with it, read back", () =>
    Effect.gen(function*() {
      const store = yield* TokenStore.TokenStore
      yield* store.set(key, token("a1", "r1"))
      assert.isTrue((yield* rawToken("cfg_one", key)).startsWith("aesgcm2."))
      assert.isTrue(Option.isSome(yield* store.get(key)))
    }).pipe(Effect.provide(stores({ DIGIME_STORE_TABLE: "cfg_one", DIGIME_STORE_ENCRYPTION_KEY: key32() }))))

  it.effect("a key ring: what the previous key sealed opens under the new one", () =>
    Effect.gen(function*() {
      const old = key32()
      yield* Effect.flatMap(TokenStore.TokenStore, (store) => store.set(key, token("a1", "r1"))).pipe(
        Effect.provide(
          stores({
            DIGIME_STORE_TABLE: "cfg_ring",
            DIGIME_STORE_ENCRYPTION_KEY: old,
            DIGIME_STORE_ENCRYPTION_KEY_ID: "k1"
          })
        )
      )
      const read = yield* Effect.flatMap(TokenStore.TokenStore, (store) => store.get(key)).pipe(
        Effect.provide(stores({
          DIGIME_STORE_TABLE: "cfg_ring",
          DIGIME_STORE_ENCRYPTION_KEY: key32(),
          DIGIME_STORE_ENCRYPTION_KEY_ID: "k2",
          DIGIME_STORE_PREVIOUS_KEYS: `k1=${old}`
        }))
      )
      assert.isTrue(Option.isSome(read))
      assert.include(yield* rawToken("cfg_ring", key).pipe(Effect.provide(Sqlite)), "aesgcm2.k1.")
    }))

  it.effect("bad settings fail when the layer is built: ConfigError or InvalidConfig, naming the setting", () =>
    Effect.gen(function*() {
      const build = (env: Record<string, string>) => Effect.flip(Effect.scoped(Layer.build(stores(env))))
      const previousWithoutId = yield* build({
        DIGIME_STORE_ENCRYPTION_KEY: key32(),
        DIGIME_STORE_PREVIOUS_KEYS: `k=${key32()}`
      })
      assert.include(String(previousWithoutId), "DIGIME_STORE_ENCRYPTION_KEY_ID")
      const idWithoutKey = yield* build({ DIGIME_STORE_ENCRYPTION_KEY_ID: "k1" })
      assert.include(String(idWithoutKey), "DIGIME_STORE_ENCRYPTION_KEY")
      const badPairs = yield* build({
        DIGIME_STORE_ENCRYPTION_KEY: key32(),
        DIGIME_STORE_ENCRYPTION_KEY_ID: "k2",
        DIGIME_STORE_PREVIOUS_KEYS: "no-equals-sign"
      })
      assert.include(String(badPairs), "DIGIME_STORE_PREVIOUS_KEYS")
      const short = yield* build({ DIGIME_STORE_ENCRYPTION_KEY: "c2hvcnQ=" })
      assert.strictEqual((short as { readonly _tag: string })._tag, "InvalidConfig")
      const badTable = yield* build({ DIGIME_STORE_TABLE: "no spaces allowed" })
      assert.strictEqual((badTable as { readonly _tag: string })._tag, "InvalidConfig")
      // The key never appears in what is reported.
      assert.notInclude(String(short), "c2hvcnQ=")
    }))
})
