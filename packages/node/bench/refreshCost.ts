/**
 * 3. What one refresh costs, end to end through the library (`TokenManager.refresh(key)`: the store's
 * lease, a re-read, the signed request, the verification of digi.me's answer, the compare-and-set),
 * against its floor: the same refresh written by hand with nothing but `node:crypto` and undici,
 * one RSA-PSS signature with a key parsed once, one HTTP round trip to the same simulator, one
 * verification with the public key already in memory, one store write. The two alternate, on two
 * users of the same simulator, so that drift touches both alike. Also counted: the key-set (JWKS)
 * downloads per refresh once the keys are cached (target 0).
 */
import { type TokenKey, TokenManager, TokenStore, UserAccessToken } from "@digime-effect/core"
import Undici from "@effect/platform-node/Undici"
import { DateTime, Effect, Option, Redacted } from "effect"
import * as Crypto from "node:crypto"
import type { NodeDigimeSimulator } from "../src/testing/index.js"
import {
  applicationId,
  authorize,
  clientLayer,
  contractId,
  keyOf,
  median,
  quantile,
  refreshRequests,
  type SectionOptions,
  startSimulator,
  type Store,
  storeLayer,
  testContract
} from "./support.js"

const section = "3 refresh cost"

const base64url = (bytes: Uint8Array | string) => Buffer.from(bytes).toString("base64url")
const header = base64url(JSON.stringify({ alg: "PS512", typ: "JWT" }))
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
const nonce = () => Array.from({ length: 32 }, () => alphabet[Crypto.randomInt(alphabet.length)]).join("")

/** The refresh, by hand: each step timed on its own. */
const makeHandWritten = (server: NodeDigimeSimulator.Server, publicKey: Crypto.KeyObject) => {
  const privateKey = Crypto.createPrivateKey({ key: Redacted.value(testContract.contract.privateKey), format: "pem" })
  const agent = new Undici.Agent()
  const url = new URL(`${server.baseUrl}oauth/token`)
  return {
    agent,
    refresh: (key: TokenKey.TokenKey, current: TokenStore.Versioned) =>
      Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const t0 = performance.now()
        const payload = base64url(JSON.stringify({
          client_id: `${applicationId}_${contractId}`,
          nonce: nonce(),
          timestamp: Date.now(),
          grant_type: "refresh_token",
          refresh_token: Redacted.value(current.token.refreshToken.value)
        }))
        const signature = Crypto.sign("sha512", Buffer.from(`${header}.${payload}`), {
          key: privateKey,
          padding: Crypto.constants.RSA_PKCS1_PSS_PADDING,
          saltLength: Crypto.constants.RSA_PSS_SALTLEN_DIGEST
        })
        const assertion = `${header}.${payload}.${base64url(signature)}`
        const t1 = performance.now()
        const answer = yield* Effect.promise(async () => {
          const response = await agent.request({
            origin: url.origin,
            path: url.pathname,
            method: "POST",
            headers: {
              authorization: `Bearer ${assertion}`,
              "content-type": "application/json",
              accept: "application/json"
            }
          })
          const body = await response.body.json() as { readonly token?: string }
          if (response.statusCode !== 200 && response.statusCode !== 201) {
            throw new Error(`hand-written refresh: HTTP ${response.statusCode}`)
          }
          return body.token!
        })
        const t2 = performance.now()
        const [signedHeader, signedPayload, tokenSignature] = answer.split(".")
        const valid = Crypto.verify("sha512", Buffer.from(`${signedHeader}.${signedPayload}`), {
          key: publicKey,
          padding: Crypto.constants.RSA_PKCS1_PSS_PADDING,
          saltLength: 64
        }, Buffer.from(tokenSignature!, "base64url"))
        if (!valid) return yield* Effect.dieMessage("hand-written refresh: the token does not verify")
        const claims = JSON.parse(Buffer.from(signedPayload!, "base64url").toString("utf8"))
        const token = new UserAccessToken.UserAccessToken({
          accessToken: new UserAccessToken.Token({
            value: Redacted.make(claims.access_token.value),
            expiresAt: DateTime.unsafeMake(claims.access_token.expires_on * 1000)
          }),
          refreshToken: new UserAccessToken.Token({
            value: Redacted.make(claims.refresh_token.value),
            expiresAt: DateTime.unsafeMake(claims.refresh_token.expires_on * 1000)
          })
        })
        const t3 = performance.now()
        const written = yield* store.compareAndSet(key, current.version, token).pipe(Effect.orDie)
        const t4 = performance.now()
        return {
          versioned: Option.getOrThrow(written),
          steps: { sign: t1 - t0, http: t2 - t1, verify: t3 - t2, store: t4 - t3, total: t4 - t0 }
        }
      })
  }
}

interface Steps {
  readonly sign: number
  readonly http: number
  readonly verify: number
  readonly store: number
  readonly total: number
}

export const run = (options: SectionOptions) =>
  Effect.gen(function*() {
    const repetitions = options.quick ? 10 : 100
    const server = yield* startSimulator({ accessTokenLifetime: "1 hour" })
    const jwks = yield* Effect.promise(async () => {
      const response = await fetch(server.jwksUrl)
      return await response.json() as { readonly keys: ReadonlyArray<{ readonly pem: string }> }
    })
    const publicKey = Crypto.createPublicKey(jwks.keys[0]!.pem)
    for (const store of ["memory", "postgres"] as ReadonlyArray<Store>) {
      const handWritten = makeHandWritten(server, publicKey)
      yield* Effect.addFinalizer(() => Effect.promise(() => handWritten.agent.close()))
      const library = keyOf(`refresh-library-${store}`)
      const byHand = keyOf(`refresh-by-hand-${store}`)
      yield* Effect.gen(function*() {
        const manager = yield* TokenManager.TokenManager
        const tokens = yield* TokenStore.TokenStore
        yield* authorize(server, library)
        yield* authorize(server, byHand)
        let current = Option.getOrThrow(yield* Effect.orDie(tokens.get(byHand)))
        // Warm-up: both paths once, uncounted.
        yield* manager.refresh(library).pipe(Effect.orDie)
        current = (yield* handWritten.refresh(byHand, current)).versioned

        const libraryMillis: Array<number> = []
        const floor: Array<Steps> = []
        const before = yield* refreshRequests(server)
        for (let i = 0; i < repetitions; i++) {
          const t0 = performance.now()
          yield* manager.refresh(library).pipe(Effect.orDie)
          libraryMillis.push(performance.now() - t0)
          const result = yield* handWritten.refresh(byHand, current)
          current = result.versioned
          floor.push(result.steps)
        }
        const after = yield* refreshRequests(server)

        const value = median(libraryMillis)
        const floorMillis = median(floor.map((steps) => steps.total))
        const step = (name: keyof Steps) => median(floor.map((steps) => steps[name]))
        options.report.record({
          section,
          name: `one refresh end to end (${store} store)`,
          value,
          unit: "ms",
          floor: floorMillis,
          floorName: "ms by hand",
          ratio: value / floorMillis,
          details: {
            repetitions,
            overheadMillis: value - floorMillis,
            p90: quantile(libraryMillis, 0.9),
            floorP90: quantile(floor.map((steps) => steps.total), 0.9),
            floorSteps: { sign: step("sign"), http: step("http"), verify: step("verify"), store: step("store") },
            ...(store === "postgres"
              ? { note: "the library also re-reads the row and takes the refresh's lease (one UPDATE) before sending" }
              : {})
          }
        })
        options.report.record({
          section,
          name: `key-set (JWKS) downloads per refresh, steady state (${store} store)`,
          value: (after.jwks - before.jwks) / repetitions,
          unit: "per refresh",
          target: "0",
          pass: after.jwks === before.jwks,
          details: {
            libraryRefreshes: repetitions,
            // Both paths: every request digi.me received was a successful refresh, none a replay.
            refreshRequests: after.refreshRequests - before.refreshRequests,
            refreshesGranted: after.refreshes - before.refreshes,
            replays: after.replays - before.replays,
            jwksDownloads: after.jwks - before.jwks
          }
        })
      }).pipe(Effect.provide(clientLayer(
        server,
        storeLayer(store, { pgUrl: options.pgUrl, tableName: `bench_refresh_${process.pid}` })
      )))
    }
  }).pipe(Effect.scoped)
