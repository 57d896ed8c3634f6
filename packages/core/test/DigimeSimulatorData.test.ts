import { Signer } from "@digime-effect/core"
import { DigimeSimulator, TestContract } from "@digime-effect/core/testing"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Either, Encoding, Fiber, Layer, Option, Redacted, Stream, TestClock } from "effect"

const applicationId = "app-1"
const readId = "contract-r"
const writeId = "contract-w"
const otherId = "contract-r2"
const baseUrl = "https://api.digi.me/v1.7/"
const callbackUrl = "https://app.example/digime/callback"
const agent = { sdk: { name: "simulator-test", version: "1.0.0" } }

// PKCS#8 private keys, so that Web Crypto imports them directly for decryption.
const reader = await Effect.runPromise(TestContract.make(readId, { format: "pkcs8" }))
const writer = await Effect.runPromise(TestContract.make(writeId, { format: "pkcs8" }))
const other = await Effect.runPromise(TestContract.make(otherId, { format: "pkcs8" }))

const simulatorOptions: DigimeSimulator.Options = {
  applicationId,
  contracts: [
    { contractId: readId, publicKeyPem: reader.publicKeyPem },
    { contractId: writeId, publicKeyPem: writer.publicKeyPem, accessType: "w" },
    { contractId: otherId, publicKeyPem: other.publicKeyPem, accessType: "r" }
  ]
}

const TestLayer = (options: Partial<DigimeSimulator.Options> = {}) =>
  Layer.merge(DigimeSimulator.layer({ ...simulatorOptions, ...options }), Signer.layerWebCrypto)

// --- helpers ---------------------------------------------------------------------------------

const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
const makeNonce = () => Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => alphanumeric[b % 62]).join("")
const utf8 = new TextEncoder()
const text = (bytes: string | Uint8Array) => typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes)
const segment = (value: unknown) => Encoding.encodeBase64Url(JSON.stringify(value))
const fromBase64Url = (value: string) => new Uint8Array(Either.getOrThrow(Encoding.decodeBase64Url(value)))
const decodePayload = (jwt: string): any => JSON.parse(text(fromBase64Url(jwt.split(".")[1]!)))
const pemBody = (pem: string) =>
  new Uint8Array(Either.getOrThrow(Encoding.decodeBase64(pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""))))

type Contract = TestContract.TestContract

const signWith = (contract: Contract, claims: Record<string, unknown>) =>
  Effect.flatMap(Signer.Signer, (signer) => signer.sign(contract.contract, claims)).pipe(Effect.map(Redacted.value))

const assertion = (contract: Contract, claims: Record<string, unknown>) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    return yield* signWith(contract, {
      client_id: `${applicationId}_${contract.contract.contractId}`,
      nonce: makeNonce(),
      timestamp: now,
      ...claims
    })
  })

interface Sent {
  readonly headers?: Record<string, string>
  readonly body?: Uint8Array
  readonly url?: string
}

/** One signed request through `handle`: the raw answer. */
const send = (method: string, path: string, contract: Contract, claims: Record<string, unknown>, options: Sent = {}) =>
  Effect.gen(function*() {
    const simulator = yield* DigimeSimulator.DigimeSimulator
    const jwt = yield* assertion(contract, claims)
    return yield* simulator.handle({
      method,
      url: options.url ?? `${baseUrl}${path}`,
      headers: { authorization: `Bearer ${jwt}`, ...options.headers },
      body: options.body
    })
  })

const jsonBody = (value: unknown): Sent => ({
  headers: { "content-type": "application/json" },
  body: utf8.encode(JSON.stringify(value))
})

const json = (response: DigimeSimulator.SimResponse): any =>
  response.body.length === 0 ? undefined : JSON.parse(text(response.body))

const assertError = (response: DigimeSimulator.SimResponse, status: number, code: string) => {
  assert.strictEqual(response.status, status, text(response.body))
  assert.strictEqual(json(response).error.code, code)
  assert.isString(json(response).error.message)
  assert.isString(json(response).error.reference)
}

/** A user of the read contract with one account: its access token, user id and account id. */
const newUser = Effect.gen(function*() {
  const simulator = yield* DigimeSimulator.DigimeSimulator
  const token = yield* simulator.grant({ contractId: readId })
  const digimeUserId = token.digimeUserId!
  const [account] = yield* simulator.accountsOf(digimeUserId)
  return { accessToken: Redacted.value(token.accessToken.value), digimeUserId, accountId: account!.id }
})

const tokenFor = (contractId: string, digimeUserId: string) =>
  Effect.flatMap(DigimeSimulator.DigimeSimulator, (simulator) => simulator.grant({ contractId, digimeUserId })).pipe(
    Effect.map((token) => Redacted.value(token.accessToken.value))
  )

const trigger = (accessToken: string, options: Record<string, unknown> = {}, contract = reader) =>
  Effect.gen(function*() {
    const answer = yield* send(
      "POST",
      "permission-access/trigger",
      contract,
      { access_token: accessToken },
      jsonBody({ ...options, agent })
    )
    assert.strictEqual(answer.status, 202, text(answer.body))
    return json(answer).session as { readonly key: string; readonly expiry: number }
  })

const fileList = (accessToken: string, sessionKey: string, contract = reader) =>
  send("GET", `permission-access/query/${sessionKey}`, contract, { access_token: accessToken })

const listed = (accessToken: string, sessionKey: string) =>
  Effect.map(fileList(accessToken, sessionKey), (answer) => {
    assert.strictEqual(answer.status, 200, text(answer.body))
    return json(answer)
  })

const names = (list: any): Array<string> => (list.fileList ?? []).map((file: any) => file.name)

const download = (accessToken: string, sessionKey: string, name: string, method = "GET", contract = reader) =>
  send(method, `permission-access/query/${sessionKey}/${name}`, contract, { access_token: accessToken })

const polled = (accessToken: string, sessionKey: string, times: number) =>
  Effect.gen(function*() {
    let last: any
    for (let i = 0; i < times; i++) last = yield* listed(accessToken, sessionKey)
    return last
  })

/** Opens an envelope with Web Crypto: RSA-OAEP SHA-1 unwrap of bytes 0-255, AES-256-CBC of the rest. */
const decrypt = (envelope: Uint8Array, contract: Contract = reader) =>
  Effect.tryPromise(async () => {
    const privateKey = await crypto.subtle.importKey(
      "pkcs8",
      pemBody(Redacted.value(contract.contract.privateKey)),
      { name: "RSA-OAEP", hash: "SHA-1" },
      false,
      ["decrypt"]
    )
    const dataKey = await crypto.subtle.decrypt({ name: "RSA-OAEP" }, privateKey, envelope.slice(0, 256))
    assert.strictEqual(dataKey.byteLength, 32)
    const aesKey = await crypto.subtle.importKey("raw", dataKey, { name: "AES-CBC" }, false, ["decrypt"])
    const iv = envelope.slice(256, 272)
    return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-CBC", iv }, aesKey, envelope.slice(272)))
  })

const gunzip = (bytes: Uint8Array) =>
  Effect.promise(async () =>
    new Uint8Array(
      await new Response(new Blob([new Uint8Array(bytes)]).stream().pipeThrough(new DecompressionStream("gzip")))
        .arrayBuffer()
    )
  )

const xMetadata = (response: DigimeSimulator.SimResponse): any =>
  JSON.parse(text(fromBase64Url(response.headers["x-metadata"]!)))

const bytesOf = (response: DigimeSimulator.SimResponse): Uint8Array => {
  assert.instanceOf(response.body, Uint8Array)
  return response.body as Uint8Array
}

const pkce = Effect.promise(async () => {
  const verifier = Encoding.encodeBase64Url(makeNonce())
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", utf8.encode(verifier)))
  return { verifier, challenge: Encoding.encodeBase64Url(digest) }
})

// --- tests -----------------------------------------------------------------------------------

describe("DigimeSimulator data: sessions and the file list", () => {
  it.effect("a trigger session runs syncPolls polls with files appearing, then completes with all of them", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, accountId, digimeUserId } = yield* newUser
      yield* TestClock.adjust("1 minute")
      yield* simulator.addFiles(digimeUserId, [
        { name: "a.json", content: "[1]" },
        { name: "b.json", content: "[2]" },
        { name: "c.json", content: "[3]" }
      ])
      const session = yield* trigger(accessToken)
      // ms since the epoch, 30 minutes ahead.
      assert.strictEqual(session.expiry, 60_000 + 30 * 60_000)

      const first = yield* listed(accessToken, session.key)
      assert.deepStrictEqual(first.status, { state: "running", details: { [accountId]: { state: "running" } } })
      assert.deepStrictEqual(names(first), ["a.json"])
      assert.deepStrictEqual(first.fileList[0], {
        name: "a.json",
        updatedDate: 60_000,
        schema: { standard: "digime", version: "1.0.0" },
        objectCount: 1,
        objectType: "post",
        serviceGroup: "social",
        serviceName: "simulated"
      })
      assert.deepStrictEqual(names(yield* listed(accessToken, session.key)), ["a.json", "b.json"])
      const done = yield* listed(accessToken, session.key)
      assert.deepStrictEqual(done.status, { state: "completed", details: { [accountId]: { state: "completed" } } })
      assert.deepStrictEqual(names(done), ["a.json", "b.json", "c.json"])

      // Added later, or added again: later polls show them, the changed one with a raised updatedDate.
      yield* simulator.addFiles(digimeUserId, [{ name: "d.json", content: "[4]" }, { name: "a.json", content: "[9]" }])
      const later = yield* listed(accessToken, session.key)
      assert.strictEqual(later.status.state, "completed")
      assert.deepStrictEqual(names(later), ["a.json", "b.json", "c.json", "d.json"])
      assert.strictEqual(later.fileList[0].updatedDate, 60_001)
      assert.strictEqual(later.fileList[3].updatedDate, 60_000)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("syncPolls 0 completes at the first poll; sourceFetch false completes at once without details", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, digimeUserId } = yield* newUser
      yield* simulator.addFiles(digimeUserId, [{ name: "a.json", content: "{}" }])
      const session = yield* trigger(accessToken)
      assert.strictEqual((yield* listed(accessToken, session.key)).status.state, "completed")
      const noFetch = yield* trigger(accessToken, { sourceFetch: false })
      const list = yield* listed(accessToken, noFetch.key)
      assert.deepStrictEqual(list.status, { state: "completed" })
      assert.deepStrictEqual(names(list), ["a.json"])
    }).pipe(Effect.provide(TestLayer({ syncPolls: 0 }))))

  it.effect("an account needing reauthorization ends partial with ServiceAuthorizationError; sourceFetchFilter", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, accountId, digimeUserId } = yield* newUser
      const second = yield* simulator.addAccount(digimeUserId)
      yield* simulator.requireReauth(digimeUserId, second.id)
      assert.isTrue((yield* simulator.accountsOf(digimeUserId))[1]!.reauthRequired)

      const session = yield* trigger(accessToken)
      const list = yield* polled(accessToken, session.key, 2)
      assert.deepStrictEqual(list.status, {
        state: "partial",
        details: {
          [accountId]: { state: "completed" },
          [second.id]: {
            state: "partial",
            error: {
              code: "ServiceAuthorizationError",
              statusCode: 511,
              message: "Service authorization required",
              reauth: true
            }
          }
        }
      })
      // The accounts list says so too.
      const accounts = json(yield* send("GET", "permission-access/accounts", reader, { access_token: accessToken }))
      assert.deepStrictEqual(accounts.map((account: any) => account.accessTokenStatus.authorized), [true, false])

      // Only the filtered account is synced.
      const filtered = yield* trigger(accessToken, { sourceFetchFilter: { account: { id: [accountId] } } })
      const filteredList = yield* polled(accessToken, filtered.key, 2)
      assert.deepStrictEqual(filteredList.status, {
        state: "completed",
        details: { [accountId]: { state: "completed" } }
      })

      // A filter of another shape is refused, as the SDK's own check would.
      const bad = yield* send(
        "POST",
        "permission-access/trigger",
        reader,
        { access_token: accessToken },
        jsonBody({ agent, sourceFetchFilter: { account: { id: [1] } } })
      )
      assertError(bad, 400, "ValidationErrors")

      yield* simulator.requireReauth(digimeUserId, second.id, false)
      const again = yield* trigger(accessToken)
      assert.strictEqual((yield* polled(accessToken, again.key, 2)).status.state, "completed")
    }).pipe(Effect.provide(TestLayer({ syncPolls: 1 }))))

  it.effect("a pre-authorization's session is pending until the consent, then runs", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, digimeUserId } = yield* newUser
      yield* simulator.addFiles(digimeUserId, [{ name: "a.json", content: "{}" }])
      const { challenge } = yield* pkce
      // Linked to the same user through its access token.
      const answer = yield* send("POST", "oauth/authorize", reader, {
        access_token: accessToken,
        code_challenge: challenge,
        code_challenge_method: "S256",
        redirect_uri: callbackUrl,
        state: "s",
        response_mode: "query",
        response_type: "code"
      }, jsonBody({ agent }))
      assert.strictEqual(answer.status, 201)
      const { session, token } = json(answer)
      assert.deepStrictEqual(yield* listed(accessToken, session.key), { status: { state: "pending" } })
      assert.deepStrictEqual(yield* listed(accessToken, session.key), { status: { state: "pending" } })
      assertError(yield* download(accessToken, session.key, "a.json"), 404, "FileNotFound")
      const code = decodePayload(token).preauthorization_code
      yield* simulator.consent(`${simulator.onboardUrl}authorize?code=${code}`)
      const running = yield* listed(accessToken, session.key)
      assert.strictEqual(running.status.state, "running")
      assert.strictEqual((yield* polled(accessToken, session.key, 2)).status.state, "completed")
    }).pipe(Effect.provide(TestLayer())))

  it.effect("unknown, foreign and expired sessions; bad tokens; write contracts cannot read", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, digimeUserId } = yield* newUser
      const session = yield* trigger(accessToken)
      assertError(yield* fileList(accessToken, "no-such-session"), 404, "SessionNotFound")
      // Another user's session, and the same user's session read by another contract.
      const stranger = yield* newUser
      assertError(yield* fileList(stranger.accessToken, session.key), 404, "SessionNotFound")
      const otherToken = yield* tokenFor(otherId, digimeUserId)
      assertError(yield* fileList(otherToken, session.key, other), 404, "SessionNotFound")
      assert.strictEqual((yield* fileList(otherToken, (yield* trigger(otherToken, {}, other)).key, other)).status, 200)
      // Tokens: unknown, revoked.
      assertError(yield* fileList("nope", session.key), 401, "InvalidToken")
      yield* simulator.revokeAccessToken(otherToken)
      assertError(yield* fileList(otherToken, session.key, other), 401, "InvalidToken")
      // A write contract of the same user.
      const writeToken = yield* tokenFor(writeId, digimeUserId)
      const writeSession = yield* trigger(writeToken, {}, writer)
      assertError(yield* fileList(writeToken, writeSession.key, writer), 403, "InsufficientScope")
      assertError(yield* download(writeToken, writeSession.key, "a.json", "GET", writer), 403, "InsufficientScope")
      // No body on a GET; claims A exactly.
      const withBody = yield* send(
        "GET",
        `permission-access/query/${session.key}`,
        reader,
        { access_token: accessToken },
        jsonBody({})
      )
      assertError(withBody, 400, "ValidationErrors")
      assertError(
        yield* send("GET", `permission-access/query/${session.key}`, reader, { access_token: accessToken, state: "x" }),
        400,
        "ValidationErrors"
      )
      // Expired after 30 minutes: 410, even with a fresh token.
      yield* TestClock.adjust("31 minutes")
      const fresh = yield* tokenFor(readId, digimeUserId)
      assertError(yield* fileList(fresh, session.key), 410, "SessionExpired")
      const recorded = yield* simulator.requests
      assert.include(recorded.map((request) => request.problem), "fileList: expired session")
    }).pipe(Effect.provide(TestLayer())))
})

describe("DigimeSimulator data: file downloads", () => {
  it.effect("the envelope opens with the contract's key; x-metadata, last-modified; HEAD answers headers only", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, digimeUserId } = yield* newUser
      yield* TestClock.adjust("2 seconds")
      const metadata = {
        objectCount: 2,
        objectType: "media",
        serviceGroup: "social",
        serviceName: "instagram",
        schema: { standard: "fhir" as const, version: "3.0.0" }
      }
      const content = "{\"test-content\":\"api.digi.me-file1.json\"}"
      yield* simulator.addFiles(digimeUserId, [
        { name: "file1.json", content, metadata },
        { name: "empty.bin", content: new Uint8Array(0) }
      ])
      const session = yield* trigger(accessToken)
      yield* polled(accessToken, session.key, 3)

      const answer = yield* download(accessToken, session.key, "file1.json")
      assert.strictEqual(answer.status, 200)
      assert.strictEqual(answer.headers["content-type"], "application/octet-stream")
      assert.strictEqual(answer.headers["last-modified"], "Thu, 01 Jan 1970 00:00:02 GMT")
      // base64url without padding, of {metadata} (no compression).
      assert.match(answer.headers["x-metadata"]!, /^[A-Za-z0-9_-]+$/)
      assert.deepStrictEqual(xMetadata(answer), { metadata })
      const envelope = bytesOf(answer)
      assert.strictEqual(envelope.length, 256 + 16 + 48)
      assert.strictEqual(text(yield* decrypt(envelope)), content)
      // Fresh key and IV on every answer.
      const again = bytesOf(yield* download(accessToken, session.key, "file1.json"))
      assert.notDeepEqual(again.slice(0, 272), envelope.slice(0, 272))
      assert.strictEqual(text(yield* decrypt(again)), content)
      // Another contract's key cannot open it.
      assert.isTrue(Either.isLeft(yield* Effect.either(decrypt(envelope, other))))

      const empty = bytesOf(yield* download(accessToken, session.key, "empty.bin"))
      assert.strictEqual(empty.length, 288)
      assert.strictEqual((yield* decrypt(empty)).length, 0)

      const head = yield* download(accessToken, session.key, "file1.json", "HEAD")
      assert.strictEqual(head.status, 200)
      assert.strictEqual(head.body, "")
      assert.strictEqual(head.headers["x-metadata"], answer.headers["x-metadata"])
      assert.strictEqual(head.headers["last-modified"], answer.headers["last-modified"])
      // Errors of a HEAD keep their status and headers, without a body.
      const missing = yield* download(accessToken, session.key, "nope.json", "HEAD")
      assert.strictEqual(missing.status, 404)
      assert.strictEqual(missing.body, "")
      assert.strictEqual(missing.headers["x-error-code"], "FileNotFound")
      assertError(yield* download(accessToken, session.key, "nope.json"), 404, "FileNotFound")

      const stats = yield* simulator.stats
      assert.strictEqual(stats.requests.file, 4)
      assert.strictEqual(stats.requests.fileMetadata, 2)
      assert.strictEqual(stats.requests.fileList, 3)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("only the files a session lists can be downloaded", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, digimeUserId } = yield* newUser
      yield* simulator.addFiles(digimeUserId, [{ name: "a.json", content: "1" }, { name: "b.json", content: "2" }])
      const session = yield* trigger(accessToken)
      assertError(yield* download(accessToken, session.key, "a.json"), 404, "FileNotFound")
      assert.deepStrictEqual(names(yield* listed(accessToken, session.key)), [])
      assert.deepStrictEqual(names(yield* listed(accessToken, session.key)), ["a.json"])
      assert.strictEqual((yield* download(accessToken, session.key, "a.json")).status, 200)
      assertError(yield* download(accessToken, session.key, "b.json"), 404, "FileNotFound")
    }).pipe(Effect.provide(TestLayer({ syncPolls: 3 }))))

  it.effect("gzip is compressed before encryption; brotli content is served as given", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, digimeUserId } = yield* newUser
      const content = JSON.stringify({ repeated: "data ".repeat(200) })
      const brotli = Uint8Array.from([0x1b, 0x03, 0x00, 0xf8, 0x25, 0x00, 0xa2, 0x90])
      yield* simulator.addFiles(digimeUserId, [
        { name: "gz.json", content, compression: "gzip" },
        { name: "br.json", compressed: brotli, compression: "brotli" },
        { name: "plain.json", content, compression: "none" }
      ])
      const session = yield* trigger(accessToken, { sourceFetch: false })
      yield* listed(accessToken, session.key)

      const gz = yield* download(accessToken, session.key, "gz.json")
      assert.strictEqual(xMetadata(gz).compression, "gzip")
      const compressed = yield* decrypt(bytesOf(gz))
      assert.deepStrictEqual(Array.from(compressed.slice(0, 2)), [0x1f, 0x8b])
      assert.isBelow(compressed.length, content.length)
      assert.strictEqual(text(yield* gunzip(compressed)), content)

      const br = yield* download(accessToken, session.key, "br.json")
      assert.strictEqual(xMetadata(br).compression, "brotli")
      assert.deepStrictEqual(yield* decrypt(bytesOf(br)), brotli)

      const plain = yield* download(accessToken, session.key, "plain.json")
      assert.notProperty(xMetadata(plain), "compression")
      assert.strictEqual(text(yield* decrypt(bytesOf(plain))), content)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("addFiles refuses unknown users and accounts, bad names and brotli content to compress", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { digimeUserId } = yield* newUser
      const refusals = [
        simulator.addFiles("nobody", [{ name: "a", content: "" }]),
        simulator.addFiles(digimeUserId, [{ name: "a", content: "", accountId: "nope" }]),
        simulator.addFiles(digimeUserId, [{ name: "a/b", content: "" }]),
        simulator.addFiles(digimeUserId, [{ name: "", content: "" }]),
        simulator.addFiles(digimeUserId, [{ name: "a", content: "", compression: "brotli" as "gzip" }]),
        simulator.addFiles(digimeUserId, [{ name: "a", content: "", metadata: { mimetype: 1 } as any }])
      ]
      for (const refused of refusals) {
        assert.strictEqual((yield* Effect.flip(refused))._tag, "SimulatorError")
      }
      assert.strictEqual((yield* Effect.flip(simulator.accountsOf("nobody")))._tag, "SimulatorError")
      assert.strictEqual((yield* Effect.flip(simulator.requireReauth(digimeUserId, "nope")))._tag, "SimulatorError")
    }).pipe(Effect.provide(TestLayer())))
})

describe("DigimeSimulator data: download faults", () => {
  const withFiles = Effect.gen(function*() {
    const simulator = yield* DigimeSimulator.DigimeSimulator
    const { accessToken, digimeUserId } = yield* newUser
    yield* simulator.addFiles(digimeUserId, [
      { name: "one.json", content: "x".repeat(40) },
      { name: "two.json", content: "y" }
    ])
    const session = yield* trigger(accessToken, { sourceFetch: false })
    yield* listed(accessToken, session.key)
    return { simulator, accessToken, session }
  })

  it.effect("CorruptEnvelope, TruncateEnvelope and WrongKeyEnvelope break the envelope once, of the named file", () =>
    Effect.gen(function*() {
      const { accessToken, session, simulator } = yield* withFiles
      const get = (name: string) => Effect.map(download(accessToken, session.key, name), bytesOf)

      yield* simulator.injectFault({ _tag: "CorruptEnvelope", fileName: "two.json" })
      assert.strictEqual(text(yield* decrypt(yield* get("one.json"))), "x".repeat(40))
      // One ciphertext block: the IV's last byte is flipped; the padding check fails.
      const corrupted = yield* get("two.json")
      assert.strictEqual(corrupted.length, 288)
      assert.isTrue(Either.isLeft(yield* Effect.either(decrypt(corrupted))))
      assert.strictEqual(text(yield* decrypt(yield* get("two.json"))), "y")
      // Several blocks: the block before the last one.
      yield* simulator.injectFault({ _tag: "CorruptEnvelope" })
      assert.isTrue(Either.isLeft(yield* Effect.either(decrypt(yield* get("one.json")))))

      yield* simulator.injectFault({ _tag: "TruncateEnvelope" })
      const truncated = yield* get("one.json")
      assert.strictEqual(truncated.length, 256 + 16 + 48 - 7)

      yield* simulator.injectFault({ _tag: "WrongKeyEnvelope" })
      const wrongKey = yield* get("one.json")
      assert.strictEqual(wrongKey.length, 256 + 16 + 48)
      assert.isTrue(Either.isLeft(yield* Effect.either(decrypt(wrongKey))))
      assert.strictEqual(text(yield* decrypt(yield* get("one.json"))), "x".repeat(40))
    }).pipe(Effect.provide(TestLayer())))

  it.effect("a HEAD and a refused download leave the faults pending", () =>
    Effect.gen(function*() {
      const { accessToken, session, simulator } = yield* withFiles
      yield* simulator.injectFault({ _tag: "TruncateEnvelope" })
      yield* simulator.injectFault({ _tag: "DropBody", after: 10 })
      assert.strictEqual((yield* download(accessToken, session.key, "one.json", "HEAD")).status, 200)
      assert.strictEqual((yield* download(accessToken, session.key, "missing.json")).status, 404)
      const answer = yield* download(accessToken, session.key, "one.json")
      assert.strictEqual(bytesOf(answer).length, 256 + 16 + 48 - 7)
      assert.strictEqual(answer.dropBodyAfter, 10)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("through HttpClient: bytes as served, DropBody fails the body stream, HEAD has no body", () =>
    Effect.gen(function*() {
      const { accessToken, session, simulator } = yield* withFiles
      const client = yield* HttpClient.HttpClient
      const request = (method: "GET" | "HEAD") =>
        Effect.gen(function*() {
          const jwt = yield* assertion(reader, { access_token: accessToken })
          return HttpClientRequest.make(method)(`${baseUrl}permission-access/query/${session.key}/one.json`).pipe(
            HttpClientRequest.bearerToken(jwt),
            HttpClientRequest.accept("application/octet-stream")
          )
        })

      const whole = yield* client.execute(yield* request("GET"))
      assert.strictEqual(whole.status, 200)
      assert.strictEqual(whole.headers["content-type"], "application/octet-stream")
      const bytes = new Uint8Array(yield* whole.arrayBuffer)
      assert.strictEqual(text(yield* decrypt(bytes)), "x".repeat(40))

      yield* simulator.injectFault({ _tag: "DropBody", fileName: "one.json" })
      const cut = yield* client.execute(yield* request("GET"))
      assert.strictEqual(cut.status, 200)
      const received: Array<number> = []
      const failure = yield* Effect.flip(
        Stream.runForEach(cut.stream, (chunk) => Effect.sync(() => received.push(chunk.length)))
      )
      assert.strictEqual(failure._tag, "ResponseError")
      assert.strictEqual(received.reduce((a, b) => a + b, 0), 160)
      // One-shot.
      assert.strictEqual((yield* (yield* client.execute(yield* request("GET"))).arrayBuffer).byteLength, 320)

      const head = yield* client.execute(yield* request("HEAD"))
      assert.strictEqual(head.status, 200)
      assert.isString(head.headers["x-metadata"])
      assert.strictEqual((yield* head.arrayBuffer).byteLength, 0)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("Status, DropResponse and Delay work on the data endpoints", () =>
    Effect.gen(function*() {
      const { accessToken, session, simulator } = yield* withFiles
      yield* simulator.injectFault({ _tag: "Status", endpoint: "file", status: 503 })
      assertError(yield* download(accessToken, session.key, "one.json"), 503, "SimulatedFault")
      yield* simulator.injectFault({ _tag: "DropResponse", endpoint: "fileList" })
      assert.isTrue((yield* fileList(accessToken, session.key)).dropConnection)
      yield* simulator.injectFault({ _tag: "Delay", endpoint: "file", delay: "3 seconds" })
      const fiber = yield* Effect.fork(download(accessToken, session.key, "one.json"))
      // The request verifies and encrypts with Web Crypto first: move the clock once its answer waits.
      for (let i = 0; i < 1000 && (yield* TestClock.sleeps()).length === 0; i++) yield* TestClock.adjust(0)
      assert.lengthOf(yield* TestClock.sleeps(), 1)
      yield* TestClock.adjust("2 seconds")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Fiber.join(fiber)).status, 200)
    }).pipe(Effect.provide(TestLayer())))
})

describe("DigimeSimulator data: pushes", () => {
  const descriptor = (metadata: unknown, contract: Contract = writer) => signWith(contract, { metadata })

  const push = (
    accessToken: string,
    jwt: string,
    body: Uint8Array,
    contract: Contract = writer,
    contentType?: string
  ) =>
    send("POST", "permission-access/import", contract, { access_token: accessToken }, {
      headers: { "content-type": contentType ?? "application/octet-stream", filedescriptor: jwt },
      body
    })

  it.effect("a write contract pushes; the data is recorded and read back as a raw file by a read contract", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, accountId, digimeUserId } = yield* newUser
      const writeToken = yield* tokenFor(writeId, digimeUserId)
      yield* TestClock.adjust("5 seconds")
      const metadata = { mimeType: "application/json", accounts: [{ accountId }], reference: ["r1"], tags: ["t"] }
      const body = utf8.encode("{\"pushed\":true}")
      const answer = yield* push(writeToken, yield* descriptor(metadata), body)
      assert.strictEqual(answer.status, 201)
      assert.deepStrictEqual(json(answer), { status: "delivered" })

      const pushed = yield* simulator.pushed
      assert.lengthOf(pushed, 1)
      assert.strictEqual(pushed[0]!.contractId, writeId)
      assert.strictEqual(pushed[0]!.digimeUserId, digimeUserId)
      assert.deepStrictEqual(pushed[0]!.metadata, metadata)
      assert.deepStrictEqual(pushed[0]!.body, body)

      const session = yield* trigger(accessToken, { sourceFetch: false })
      const list = yield* listed(accessToken, session.key)
      assert.deepStrictEqual(list.fileList, [{ name: pushed[0]!.fileName, updatedDate: 5000 }])
      const file = yield* download(accessToken, session.key, pushed[0]!.fileName)
      assert.deepStrictEqual(xMetadata(file), {
        metadata: {
          mimetype: "application/json",
          accounts: [{ accountid: accountId }],
          appid: applicationId,
          contractid: writeId,
          created: 5000,
          reference: ["r1"],
          tags: ["t"]
        }
      })
      assert.deepStrictEqual(yield* decrypt(bytesOf(file)), body)
      assert.strictEqual((yield* simulator.stats).requests.push, 1)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("refusals: read contract, content type, FileDescriptor signature, header and fields, unknown account", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, accountId, digimeUserId } = yield* newUser
      const writeToken = yield* tokenFor(writeId, digimeUserId)
      const metadata = { mimeType: "text/plain", accounts: [{ accountId }] }
      const body = utf8.encode("hello")

      assertError(yield* push(accessToken, yield* descriptor(metadata, reader), body, reader), 403, "InsufficientScope")
      assertError(
        yield* push(writeToken, yield* descriptor(metadata), body, writer, "application/json"),
        400,
        "ValidationErrors"
      )
      // Signed by another contract's key.
      assertError(yield* push(writeToken, yield* descriptor(metadata, reader), body), 400, "ValidationErrors")
      // An extra field, a missing one, an empty account list.
      assertError(
        yield* push(writeToken, yield* descriptor({ ...metadata, fileName: "x" }), body),
        400,
        "ValidationErrors"
      )
      assertError(
        yield* push(writeToken, yield* descriptor({ accounts: [{ accountId }] }), body),
        400,
        "ValidationErrors"
      )
      assertError(
        yield* push(writeToken, yield* descriptor({ ...metadata, accounts: [] }), body),
        400,
        "ValidationErrors"
      )
      // Another header than {"alg":"PS512","typ":"JWT"}.
      const [, payload, signature] = (yield* descriptor(metadata)).split(".")
      const kid = `${segment({ alg: "PS512", typ: "JWT", kid: "k" })}.${payload}.${signature}`
      assertError(yield* push(writeToken, kid, body), 400, "ValidationErrors")
      assertError(yield* push(writeToken, "not-a-jwt", body), 400, "ValidationErrors")
      const foreign = { mimeType: "text/plain", accounts: [{ accountId: "someone-else" }] }
      assertError(yield* push(writeToken, yield* descriptor(foreign), body), 400, "ValidationErrors")
      assertError(yield* push("nope", yield* descriptor(metadata), body), 401, "InvalidToken")
      assert.lengthOf(yield* simulator.pushed, 0)
      const problems = (yield* simulator.requests).map((request) => request.problem)
      assert.includeMembers(problems, [
        "push: needs a write contract",
        "body: content-type is not application/octet-stream",
        "FileDescriptor: the signature does not verify (PS512, 64-byte salt)",
        "FileDescriptor: unexpected field metadata.fileName",
        "FileDescriptor: missing field metadata.mimeType",
        "FileDescriptor: someone-else is not an account of the user"
      ])
    }).pipe(Effect.provide(TestLayer())))

  it.effect("provider pushes: recorded, with the accountId header, fhir stu3 or 3.0.2 only", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accountId, digimeUserId } = yield* newUser
      const writeToken = yield* tokenFor(writeId, digimeUserId)
      const providerPush = (
        version: string,
        headers: Record<string, string>,
        body: unknown = { resourceType: "Bundle" }
      ) =>
        send("POST", `permission-access/import/h:accountId/fhir/${version}`, writer, { access_token: writeToken }, {
          headers: { "content-type": "application/json", ...headers },
          body: utf8.encode(JSON.stringify(body))
        })
      const answer = yield* providerPush("stu3", { accountid: accountId })
      assert.strictEqual(answer.status, 201)
      assert.deepStrictEqual(yield* simulator.providerPushes, [{
        contractId: writeId,
        digimeUserId,
        accountId,
        standard: "fhir",
        version: "stu3",
        body: { resourceType: "Bundle" }
      }])
      assert.strictEqual((yield* providerPush("3.0.2", { accountid: accountId })).status, 201)
      assertError(yield* providerPush("r4", { accountid: accountId }), 400, "ValidationErrors")
      assertError(yield* providerPush("stu3", {}), 400, "ValidationErrors")
      assertError(yield* providerPush("stu3", { accountid: accountId }, [1]), 400, "ValidationErrors")
      assertError(yield* providerPush("stu3", { accountid: "nope" }), 404, "AccountNotFound")
      assert.lengthOf(yield* simulator.providerPushes, 2)
      assert.strictEqual((yield* simulator.stats).requests.pushProvider, 6)
    }).pipe(Effect.provide(TestLayer())))
})

describe("DigimeSimulator data: managing accounts", () => {
  const onboardClaims = (accessToken: string, extra: Record<string, unknown> = {}) => ({
    access_token: accessToken,
    redirect_uri: callbackUrl,
    ...extra
  })

  it.effect("onboard: reference without a code challenge, then the onboard page adds an account", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, digimeUserId } = yield* newUser
      const answer = yield* send(
        "POST",
        "oauth/token/reference",
        reader,
        onboardClaims(accessToken, { state: "st" }),
        jsonBody({ agent, actions: { pull: { sourceFetch: true } } })
      )
      assert.strictEqual(answer.status, 201)
      const { session, token } = json(answer)
      const code = decodePayload(token).reference_code
      assert.isString(code)
      const url = `${simulator.onboardUrl}onboard?code=${code}&sourceType=pull`
      assert.deepStrictEqual(yield* simulator.describeConsent(url), {
        kind: "onboard",
        applicationId,
        contractId: readId,
        redirectUri: callbackUrl
      })
      assert.deepStrictEqual(yield* listed(accessToken, session.key), { status: { state: "pending" } })
      const callback = new URL(yield* simulator.consent(url))
      assert.deepStrictEqual([...callback.searchParams.entries()], [["success", "true"], ["state", "st"]])
      assert.lengthOf(yield* simulator.accountsOf(digimeUserId), 2)
      assert.strictEqual((yield* listed(accessToken, session.key)).status.state, "running")
      assert.include((yield* Effect.flip(simulator.consent(url))).reason, "already used")

      // Deny.
      const denied = yield* send(
        "POST",
        "oauth/token/reference",
        reader,
        onboardClaims(accessToken),
        jsonBody({ agent })
      )
      const deniedCode = decodePayload(json(denied).token).reference_code
      const deniedUrl = new URL(
        yield* simulator.consent(`${simulator.onboardUrl}onboard?code=${deniedCode}`, { allow: false, errorCode: "X" })
      )
      assert.deepStrictEqual([...deniedUrl.searchParams.entries()], [["success", "false"], ["errorCode", "X"]])
      assert.lengthOf(yield* simulator.accountsOf(digimeUserId), 2)

      // The access token must be usable (the SDK refreshes first), and the claims exact.
      assertError(
        yield* send("POST", "oauth/token/reference", reader, onboardClaims("nope"), jsonBody({ agent })),
        401,
        "InvalidToken"
      )
      assertError(
        yield* send(
          "POST",
          "oauth/token/reference",
          reader,
          onboardClaims(accessToken, { code_challenge_method: "S256" }),
          jsonBody({ agent })
        ),
        400,
        "ValidationErrors"
      )
      assert.strictEqual((yield* simulator.stats).requests.reference, 4)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("reauthorize one account: POST reference (claims B), then reauthorize?code&accountRef clears the mark", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, accountId, digimeUserId } = yield* newUser
      yield* simulator.requireReauth(digimeUserId, accountId)
      const answer = yield* send(
        "POST",
        "oauth/token/reference",
        reader,
        onboardClaims(accessToken),
        jsonBody({ agent })
      )
      const code = decodePayload(json(answer).token).reference_code
      const reference = yield* send("POST", "reference", reader, {}, jsonBody({ type: "accountId", value: accountId }))
      assert.strictEqual(reference.status, 201)
      const { id } = json(reference)
      assert.isString(id)
      const url = `${simulator.onboardUrl}reauthorize?code=${code}&accountRef=${id}`
      const described = yield* simulator.describeConsent(url)
      assert.strictEqual(described.kind, "reauthorize")
      assert.strictEqual(described.accountId, accountId)
      const callback = new URL(yield* simulator.consent(url))
      assert.strictEqual(callback.searchParams.get("success"), "true")
      assert.isFalse((yield* simulator.accountsOf(digimeUserId))[0]!.reauthRequired)

      // References: claims B exactly, a known account, a body of the right shape; storage ids are taken as given.
      assertError(
        yield* send(
          "POST",
          "reference",
          reader,
          { access_token: accessToken },
          jsonBody({ type: "accountId", value: accountId })
        ),
        400,
        "ValidationErrors"
      )
      assertError(
        yield* send("POST", "reference", reader, {}, jsonBody({ type: "accountId", value: "x" })),
        404,
        "AccountNotFound"
      )
      assertError(
        yield* send("POST", "reference", reader, {}, jsonBody({ type: "other", value: "x" })),
        400,
        "ValidationErrors"
      )
      assert.strictEqual(
        (yield* send("POST", "reference", reader, {}, jsonBody({ type: "cloudId", value: "s" }))).status,
        201
      )
      // An unknown accountRef is refused by the page.
      const again = yield* send(
        "POST",
        "oauth/token/reference",
        reader,
        onboardClaims(accessToken),
        jsonBody({ agent })
      )
      const againCode = decodePayload(json(again).token).reference_code
      const unknown = yield* Effect.flip(
        simulator.consent(`${simulator.onboardUrl}reauthorize?code=${againCode}&accountRef=nope`)
      )
      assert.include(unknown.reason, "accountRef")
      assert.strictEqual((yield* simulator.stats).requests.accountReference, 5)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("revoke an account's permission, then delete it with its files", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { accessToken, accountId, digimeUserId } = yield* newUser
      const second = yield* simulator.addAccount(digimeUserId)
      yield* simulator.addFiles(digimeUserId, [
        { name: "first.json", content: "1" },
        { name: "second.json", content: "2", accountId: second.id }
      ])
      const revoke = (headers: Record<string, string>) =>
        send("GET", "permission-access/revoke/h:accountId", reader, { access_token: accessToken }, { headers })
      const answer = yield* revoke({ accountid: second.id, redirecturi: "https://app.example/revoked" })
      assert.strictEqual(answer.status, 200)
      const { location } = json(answer)
      assert.isTrue(location.startsWith(`${simulator.onboardUrl}revoke?code=`))
      const described = yield* simulator.describeConsent(location)
      assert.strictEqual(described.kind, "revoke")
      assert.strictEqual(described.accountId, second.id)
      assert.strictEqual(described.redirectUri, "https://app.example/revoked")
      const callback = new URL(yield* simulator.consent(location))
      assert.deepStrictEqual([...callback.searchParams.entries()], [["result", "success"]])
      assert.isTrue((yield* simulator.accountsOf(digimeUserId))[1]!.reauthRequired)
      const failed = json(yield* revoke({ accountid: accountId, redirecturi: "https://app.example/revoked" })).location
      const failedCallback = new URL(yield* simulator.consent(failed, { allow: false }))
      assert.deepStrictEqual([...failedCallback.searchParams.entries()], [["result", "failed"], [
        "error_message",
        "AccessDenied"
      ]])
      assertError(yield* revoke({ accountid: accountId }), 400, "ValidationErrors")
      assertError(yield* revoke({ accountid: accountId, redirecturi: "/relative" }), 400, "ValidationErrors")
      assertError(yield* revoke({ accountid: "nope", redirecturi: "https://app.example/r" }), 404, "AccountNotFound")

      const remove = (headers: Record<string, string>) =>
        send("DELETE", "permission-access/service/h:accountId", reader, { access_token: accessToken }, { headers })
      assertError(yield* remove({}), 400, "ValidationErrors")
      const removed = yield* remove({ accountid: second.id, "content-type": "application/json" })
      assert.strictEqual(removed.status, 201)
      assert.deepStrictEqual((yield* simulator.accountsOf(digimeUserId)).map((account) => account.id), [accountId])
      assertError(yield* remove({ accountid: second.id }), 404, "AccountNotFound")
      const session = yield* trigger(accessToken, { sourceFetch: false })
      assert.deepStrictEqual(names(yield* listed(accessToken, session.key)), ["first.json"])
      const stats = yield* simulator.stats
      assert.strictEqual(stats.requests.revokeAccount, 5)
      assert.strictEqual(stats.requests.deleteAccount, 3)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("autoConsent: the onboard, reauthorize and revoke pages redirect at once, as Allow", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const client = yield* HttpClient.HttpClient
      const { accessToken, accountId, digimeUserId } = yield* newUser
      /** Opens a page as a browser would: the redirect's target. */
      const open = (url: string) =>
        Effect.gen(function*() {
          const answer = yield* client.get(url)
          assert.strictEqual(answer.status, 302)
          return new URL(answer.headers["location"]!)
        })
      const referenceCode = (extra: Record<string, unknown> = {}) =>
        Effect.map(
          send("POST", "oauth/token/reference", reader, onboardClaims(accessToken, extra), jsonBody({ agent })),
          (answer) => decodePayload(json(answer).token).reference_code as string
        )

      // Onboard: one more account.
      const onboarded = yield* open(`${simulator.onboardUrl}onboard?code=${yield* referenceCode({ state: "st" })}`)
      assert.deepStrictEqual([...onboarded.searchParams.entries()], [["success", "true"], ["state", "st"]])
      assert.strictEqual(`${onboarded.origin}${onboarded.pathname}`, callbackUrl)
      const [, second] = yield* simulator.accountsOf(digimeUserId)
      assert.isDefined(second)

      // Revoke the second account's permission: it needs reauthorization.
      const revoke = yield* send("GET", "permission-access/revoke/h:accountId", reader, { access_token: accessToken }, {
        headers: { accountid: second!.id, redirecturi: "https://app.example/revoked" }
      })
      const revoked = yield* open(json(revoke).location)
      assert.strictEqual(revoked.href, "https://app.example/revoked?result=success")
      assert.isTrue((yield* simulator.accountsOf(digimeUserId))[1]!.reauthRequired)

      // Reauthorize it.
      const code = yield* referenceCode()
      const { id } = json(
        yield* send("POST", "reference", reader, {}, jsonBody({ type: "accountId", value: second!.id }))
      )
      const reauthorized = yield* open(`${simulator.onboardUrl}reauthorize?code=${code}&accountRef=${id}`)
      assert.strictEqual(reauthorized.searchParams.get("success"), "true")
      assert.deepStrictEqual(
        (yield* simulator.accountsOf(digimeUserId)).map((account) => [account.id, account.reauthRequired]),
        [[accountId, false], [second!.id, false]]
      )
      // A refused page: an accountRef that is not one.
      const unknown = yield* client.get(
        `${simulator.onboardUrl}reauthorize?code=${yield* referenceCode()}&accountRef=x`
      )
      assert.strictEqual(unknown.status, 400)
      const recorded = (yield* simulator.requests).filter((request) => request.endpoint === "consent")
      assert.deepStrictEqual(recorded.map((request) => [request.path, request.status]), [
        ["/apps/saas/onboard", 302],
        ["/apps/saas/revoke", 302],
        ["/apps/saas/reauthorize", 302],
        ["/apps/saas/reauthorize", 400]
      ])
      assert.strictEqual(recorded[3]!.problem, "consent: the reauthorize URL carries an unknown or expired accountRef")
    }).pipe(Effect.provide(TestLayer({ autoConsent: true }))))
})

describe("DigimeSimulator data: discovery, sample data, contract details, report", () => {
  const discovery = (list: string, body: unknown, contract: Contract = reader) =>
    send("POST", `discovery/${list}`, contract, {}, body === undefined ? {} : jsonBody(body))

  it.effect("sources: limit, offset, filters, search and sort over the fixed catalogue", () =>
    Effect.gen(function*() {
      const all = json(yield* discovery("sources", {}))
      assert.strictEqual(all.total, 6)
      assert.strictEqual(all.limit, 10)
      assert.strictEqual(all.offset, 0)
      assert.lengthOf(all.data, 6)
      assert.isNumber(all.data[0].id)
      // What the SDK sends by default: pull sources that are approved.
      const sdkDefault = json(
        yield* discovery("sources", { query: { filter: { type: { id: [1] }, publishedStatus: ["approved"] } } })
      )
      assert.deepStrictEqual(sdkDefault.data.map((source: any) => source.id), [10, 11, 20])
      const page = json(yield* discovery("sources", { limit: 2, offset: 1, sort: { name: "desc" } }))
      assert.strictEqual(page.total, 6)
      assert.deepStrictEqual(page.data.map((source: any) => source.name), ["Simulated Photos", "Simulated Old Bank"])
      const search = json(
        yield* discovery("sources", { query: { search: { name: "bank" }, filter: { country: { id: [1] } } } })
      )
      assert.deepStrictEqual(search.data.map((source: any) => source.id), [30])
      assertError(yield* discovery("sources", { query: { filter: { nope: 1 } } }), 400, "ValidationErrors")
      assertError(yield* discovery("sources", undefined), 400, "ValidationErrors")
      assertError(yield* discovery("sources", {}, writer), 403, "InsufficientScope")
      assertError(yield* discovery("services", {}), 404, "NotFound")
    }).pipe(Effect.provide(TestLayer())))

  it.effect("countries, platforms and categories: no body, or a query filtering by id; claims B only", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      assert.lengthOf(json(yield* discovery("countries", undefined)).data, 3)
      // An empty body labelled JSON, as the SDK sends it.
      const empty = yield* send("POST", "discovery/platforms", reader, {}, {
        headers: { "content-type": "application/json", "content-length": "0" }
      })
      assert.lengthOf(json(empty).data, 2)
      const filtered = json(yield* discovery("categories", { query: { filter: { id: [2] }, include: ["name"] } }))
      assert.deepStrictEqual(filtered.data.map((category: any) => category.id), [2])
      assert.strictEqual((yield* discovery("countries", {}, writer)).status, 200)
      const { accessToken } = yield* newUser
      assertError(
        yield* send("POST", "discovery/countries", reader, { access_token: accessToken }),
        400,
        "ValidationErrors"
      )
      assert.strictEqual((yield* simulator.stats).requests.discovery, 5)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("sample datasets of a source; the contract's details", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("1 day")
      const datasets = yield* send("GET", "permission-access/sample/datasets/10", reader, {})
      assert.strictEqual(datasets.status, 200)
      assert.deepStrictEqual(json(datasets), {
        default: { name: "default", description: "" },
        test: { name: "test", description: "Sample data set test" }
      })
      assertError(yield* send("GET", "permission-access/sample/datasets/99", reader, {}), 404, "SourceNotFound")
      assertError(yield* send("GET", "permission-access/sample/datasets/abc", reader, {}), 404, "SourceNotFound")

      const details = yield* send("GET", "permission-access/contract", reader, {}, {
        headers: { "content-type": "application/json" }
      })
      assert.strictEqual(details.status, 200)
      assert.deepStrictEqual(json(details), {
        accessType: "r",
        application: { id: applicationId, name: applicationId, resources: {}, status: 1 },
        certificate: "simulated",
        certificateContractSchemaVersion: "1.0.0",
        expirationDate: 365 * 24 * 3600 * 1000,
        id: readId,
        partnerId: "simulated-partner",
        type: "pull"
      })
      assert.strictEqual(json(yield* send("GET", "permission-access/contract", writer, {})).accessType, "w")
    }).pipe(Effect.provide(TestLayer())))

  it.effect("the portability report: XML for whole seconds; from=undefined is refused", () =>
    Effect.gen(function*() {
      const { accessToken, accountId } = yield* newUser
      const report = (query: string, token = accessToken) =>
        send("GET", "", reader, { access_token: token }, { url: `${baseUrl}export/medmij/report?${query}` })
      const answer = yield* report("format=xml&from=1700000000&to=1700086400")
      assert.strictEqual(answer.status, 200)
      assert.strictEqual(answer.headers["content-type"], "application/xml")
      assert.include(text(answer.body), `<account id="${accountId}"`)
      assert.include(text(answer.body), "from=\"1700000000\"")
      assertError(yield* report("format=xml&from=undefined&to=undefined"), 400, "ValidationErrors")
      assertError(yield* report("format=json&from=1&to=2"), 400, "ValidationErrors")
      assertError(yield* report("format=xml&from=3&to=2"), 400, "ValidationErrors")
      assertError(yield* report("format=xml&from=1&to=2", "nope"), 401, "InvalidToken")
      const other = yield* send("GET", "", reader, { access_token: accessToken }, {
        url: `${baseUrl}export/other/report?format=xml&from=1&to=2`
      })
      assertError(other, 400, "ValidationErrors")
      const recorded = yield* Effect.flatMap(DigimeSimulator.DigimeSimulator, (simulator) => simulator.requests)
      assert.include(recorded.map((request) => request.problem), "query: from is not a number of seconds")
    }).pipe(Effect.provide(TestLayer())))
})

describe("DigimeSimulator data: routing and records", () => {
  it.effect("each new endpoint is counted and recorded; wrong methods are 405; HEAD elsewhere too", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const calls: Array<[string, string]> = [
        ["POST", "permission-access/query/key/file.json"],
        ["HEAD", "permission-access/query/key"],
        ["GET", "permission-access/import"],
        ["GET", "discovery/sources"],
        ["POST", "permission-access/contract"],
        ["HEAD", "permission-access/accounts"]
      ]
      for (const [method, path] of calls) {
        const answer = yield* send(method, path, reader, {})
        assert.strictEqual(answer.status, 405)
        assert.strictEqual(answer.headers["x-error-code"], "MethodNotAllowed")
        // A HEAD answer has no body.
        assert.strictEqual(answer.body.length === 0, method === "HEAD")
      }
      const recorded = yield* simulator.requests
      assert.deepStrictEqual(recorded.map((request) => [request.endpoint, request.method, request.status]), [
        ["file", "POST", 405],
        ["fileList", "HEAD", 405],
        ["push", "GET", 405],
        ["discovery", "GET", 405],
        ["contract", "POST", 405],
        ["accounts", "HEAD", 405]
      ])
      const { accessToken } = yield* newUser
      yield* send("GET", "permission-access/query/some%20key/a%20b.json", reader, { access_token: accessToken })
      const last = (yield* simulator.requests).at(-1)!
      assert.strictEqual(last.endpoint, "file")
      assert.strictEqual(last.path, "/v1.7/permission-access/query/some%20key/a%20b.json")
      assert.strictEqual(last.claims!.access_token, "<redacted>")
      assert.strictEqual(last.problem, "file: unknown or foreign session")
    }).pipe(Effect.provide(TestLayer())))
})
