/**
 * Requests to digi.me written by hand with nothing but `node:crypto` and undici: the floor that
 * section 3 measures the library against. A key parsed once, one RSA-PSS signature per request, one
 * HTTP round trip, the answer read and checked; each step timed on its own.
 */
import { type TokenKey, TokenStore, UserAccessToken } from "@digime-effect/core"
import Undici from "@effect/platform-node/Undici"
import { DateTime, Effect, Option, Redacted } from "effect"
import * as Crypto from "node:crypto"

const base64url = (bytes: Uint8Array | string) => Buffer.from(bytes).toString("base64url")
const header = base64url(JSON.stringify({ alg: "PS512", typ: "JWT" }))
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
const nonce = () => Array.from({ length: 32 }, () => alphabet[Crypto.randomInt(alphabet.length)]).join("")

/** Requests by hand: each step timed on its own. */
export const makeHandWritten = (options: {
  readonly baseUrl: string
  readonly clientId: string
  readonly privateKeyPem: string
  /** digi.me's signing key, for refreshes. */
  readonly publicKey?: Crypto.KeyObject | undefined
}) => {
  const { baseUrl, clientId, privateKeyPem, publicKey } = options
  const privateKey = Crypto.createPrivateKey({ key: privateKeyPem, format: "pem" })
  const agent = new Undici.Agent()
  const sign = (claims: Record<string, unknown>) => {
    const payload = base64url(JSON.stringify({
      client_id: clientId,
      nonce: nonce(),
      timestamp: Date.now(),
      ...claims
    }))
    const signature = Crypto.sign("sha512", Buffer.from(`${header}.${payload}`), {
      key: privateKey,
      padding: Crypto.constants.RSA_PKCS1_PSS_PADDING,
      saltLength: Crypto.constants.RSA_PSS_SALTLEN_DIGEST
    })
    return `${header}.${payload}.${base64url(signature)}`
  }
  const send = async (method: "GET" | "POST", path: string, assertion: string) => {
    const url = new URL(path, baseUrl)
    const response = await agent.request({
      origin: url.origin,
      path: url.pathname,
      method,
      headers: {
        authorization: `Bearer ${assertion}`,
        ...(method === "POST" ? { "content-type": "application/json" } : {}),
        accept: "application/json"
      }
    })
    const body = await response.body.json()
    if (response.statusCode < 200 || response.statusCode > 299) {
      throw new Error(`hand-written ${method} ${path}: HTTP ${response.statusCode}`)
    }
    return body
  }
  return {
    agent,
    /** `GET permission-access/accounts` with the access token: the accounts array. */
    dataCall: async (accessToken: string) => {
      const t0 = performance.now()
      const assertion = sign({ access_token: accessToken })
      const t1 = performance.now()
      const body = await send("GET", "permission-access/accounts", assertion)
      const t2 = performance.now()
      if (!Array.isArray(body)) throw new Error("hand-written data call: the answer is not an array of accounts")
      return { accounts: body.length, steps: { sign: t1 - t0, http: t2 - t1, total: t2 - t0 } }
    },
    refresh: (key: TokenKey.TokenKey, current: TokenStore.Versioned) =>
      Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const t0 = performance.now()
        const assertion = sign({
          grant_type: "refresh_token",
          refresh_token: Redacted.value(current.token.refreshToken.value)
        })
        const t1 = performance.now()
        const answer = yield* Effect.promise(() => send("POST", "oauth/token", assertion)) as Effect.Effect<
          { readonly token?: string }
        >
        const t2 = performance.now()
        const [signedHeader, signedPayload, tokenSignature] = answer.token!.split(".")
        const valid = Crypto.verify("sha512", Buffer.from(`${signedHeader}.${signedPayload}`), {
          key: publicKey!,
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
