/**
 * The README's examples of the digi.me calls: each a function an application would copy, exercised below against the
 * simulated digi.me. The README shows each region (`// #region <name>` … `// #endregion`) as it is; sync.test.ts
 * checks that it does.
 */
// #region imports
import {
  Authorization,
  AutoRefresh,
  DigimeClient,
  FileProtocol,
  Files,
  TokenKey,
  TokenManager
} from "@digime-effect/core"
import { Effect, Stream } from "effect"
// #endregion
import { DigimeSimulator, DigimeTest, TestContract } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Fiber, Layer, TestClock } from "effect"

// #region accounts
// The accounts (sources) of the user's library: their ids are what the calls below take.
const listAccounts = (key: TokenKey.TokenKey) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    return yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
  })

// Onboard one more service (a source; `serviceId` from the catalogue, below): send the browser to `url`.
// digi.me comes back to `callbackUrl` with `success=true`, or `success=false&errorCode=…`.
const onboardService = (key: TokenKey.TokenKey, callbackUrl: string, serviceId?: number) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    return yield* AutoRefresh.withAutoRefresh(key, (credentials) =>
      client.getOnboardServiceUrl({ ...credentials, callbackUrl, serviceId }))
  })

// Reauthorize one account whose sync ended with `reauth` (see `needsReauthorization` in `Files.readAll`'s
// progress): send the browser to `url`; digi.me comes back to `callbackUrl` with `success`.
const reauthorizeAccount = (key: TokenKey.TokenKey, accountId: string, callbackUrl: string) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    return yield* AutoRefresh.withAutoRefresh(key, (credentials) =>
      client.getReauthorizeAccountUrl({ ...credentials, accountId, callbackUrl }))
  })
// #endregion

// #region removal
// Withdraw an account's permission (MedMij): send the browser to the URL returned; it comes back to
// `redirectUri` with `result=success`, or `result=failed&error_message=…`.
const revokeAccountPermission = (key: TokenKey.TokenKey, accountId: string, redirectUri: string) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    return yield* AutoRefresh.withAutoRefresh(
      key,
      (credentials) => client.getRevokeAccountPermissionUrl({ ...credentials, accountId, redirectUri })
    )
  })

// Remove one account, and its data, from the user's library.
const deleteAccount = (key: TokenKey.TokenKey, accountId: string) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    yield* AutoRefresh.withAutoRefresh(key, (credentials) => client.deleteAccount({ ...credentials, accountId }))
  })

// Delete the user's library at digi.me, then the stored token, which nothing can use any more.
const deleteUser = (key: TokenKey.TokenKey) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    yield* AutoRefresh.withAutoRefresh(key, client.deleteUser)
    yield* (yield* TokenManager.TokenManager).delete(key)
  })
// #endregion

// #region catalogue
// Sources whose name matches, 10 a page: approved pull sources unless `query.filter` says otherwise
// (`filter.country`, `.platform`, `.category`: `{ id: [...] }`); `query.include` asks for more fields.
const findSources = (contractId: string, name: string, offset = 0) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    return yield* client.querySources({ contractId, limit: 10, offset, query: { search: { name } } })
  })

// The countries, platforms and categories that sources can be filtered by.
const sourceFilters = (contractId: string) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    return yield* Effect.all({
      countries: client.queryCountries({ contractId }),
      platforms: client.queryPlatforms({ contractId }),
      categories: client.queryCategories({ contractId })
    }, { concurrency: "unbounded" })
  })

// A source's sample datasets, by id: onboard one (`sampleDataSetId`) to try a source without an account there.
const sampleDataSets = (contractId: string, sourceId: number) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    return yield* client.getServiceSampleDataSets({ contractId, sourceId })
  })

// The contract as digi.me knows it: its access type ("r" or "w"), its application, its expiry.
const contractDetails = (contractId: string) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    return yield* client.getContractDetails({ contractId })
  })
// #endregion

// #region readSession
// A read session: digi.me syncs the user's sources (here only the accounts given, and their last 6 months) and
// lists the files under the session's key. `sourceFetch: false` lists what the library holds, without a sync.
const openSession = (key: TokenKey.TokenKey, accountIds: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    return yield* AutoRefresh.withAutoRefresh(key, (credentials) =>
      client.readSession({
        ...credentials,
        scope: { timeRanges: [{ last: "6m" }] },
        sourceFetchFilter: { account: { id: accountIds } }
      }))
  })

// The sync's state, each account's part of it, and the files listed so far.
const listFiles = (key: TokenKey.TokenKey, sessionKey: string) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    return yield* AutoRefresh.withAutoRefresh(key, (credentials) => client.readFileList({ ...credentials, sessionKey }))
  })

// The list polled every 3 seconds until the sync is over: `completed`, or `partial` when an account failed.
const waitForFiles = (key: TokenKey.TokenKey, sessionKey: string) =>
  listFiles(key, sessionKey).pipe(
    Effect.tap((list) => FileProtocol.isFinal(list.state) ? Effect.void : Effect.sleep("3 seconds")),
    Effect.repeat({ until: (list) => FileProtocol.isFinal(list.state) })
  )
// #endregion

// #region readFile
// One file, decrypted as it streams, so memory does not grow with its size (`Files.read`: `client.readFile` under
// withAutoRefresh).
const readText = (key: TokenKey.TokenKey, sessionKey: string, fileName: string) =>
  Effect.gen(function*() {
    const file = yield* Files.read(key, { sessionKey, fileName }) // fileName, metadata, compression, data
    return yield* file.data.pipe(Stream.decodeText(), Stream.mkString)
  })

// A file's metadata without its content (`HEAD`): what digi.me mapped it from, or what its pusher said of it.
const fileMetadata = (key: TokenKey.TokenKey, sessionKey: string, fileName: string) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    const headers = yield* AutoRefresh.withAutoRefresh(key, (credentials) =>
      client.readFileMetadata({ ...credentials, sessionKey, fileName }))
    return headers.metadata
  })

// A file read whole, its content in memory (at most `maxBytes`, 64 MiB unless told): a file of at most 4 MiB is read in
// one go and decrypted without a stream, the cheapest way for many small files (`Files.readAll` reads each file so).
const readSmall = (key: TokenKey.TokenKey, sessionKey: string, fileName: string) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    const file = yield* AutoRefresh.withAutoRefresh(key, (credentials) =>
      client.readFileBytes({ ...credentials, sessionKey, fileName, maxBytes: 1024 * 1024 }))
    return new TextDecoder().decode(file.data)
  })
// #endregion

// #region readAll
// Every file of a new read session: the file list polled every 3 s (10 minutes at most), each new or updated file
// downloaded once (4 at a time, retried with backoff) and decrypted, and the sync's progress.
const saveAllFiles = (key: TokenKey.TokenKey, save: (name: string, data: Uint8Array) => Effect.Effect<void>) =>
  Files.readAll(key, { pollInterval: "3 seconds", timeout: "10 minutes" }).pipe(
    Stream.runForEach((event) => {
      switch (event._tag) {
        case "Progress": // state, accounts, needsReauthorization (account ids)
          return Effect.log(`sync ${event.state}, ${event.filesListed} files listed`)
        case "File": // file (as listed), metadata, compression, data (decrypted bytes)
          return save(event.file.name, event.data)
        case "FileFailed": // its typed error, after every attempt
          return Effect.logWarning(`${event.file.name}: ${event.error._tag}`)
      }
    })
  )
// #endregion

// #region push
// The user, who has a token under `readKey`, consents to the write contract at the URL returned;
// `Authorization.completeAuthorization` on the callback stores the new token under `writeKey`.
const connectWriteContract = (readKey: TokenKey.TokenKey, writeKey: TokenKey.TokenKey, callbackUrl: string) =>
  Effect.gen(function*() {
    const started = yield* Authorization.startAddingContract({ key: writeKey, existing: readKey, callbackUrl })
    return started.url
  })

// A JSON document into the user's library, under one of their accounts; `data` may also be a `Stream`.
const pushJson = (writeKey: TokenKey.TokenKey, accountId: string, document: unknown) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    yield* AutoRefresh.withAutoRefresh(writeKey, (credentials) =>
      client.pushData({
        ...credentials,
        fileDescriptor: { mimeType: "application/json", accounts: [{ accountId }], tags: ["notes"] },
        data: new TextEncoder().encode(JSON.stringify(document))
      }))
  })

// A FHIR document (MedMij) to the provider behind one of the user's accounts; it cannot be read back.
const pushToProvider = (writeKey: TokenKey.TokenKey, accountId: string, bundle: Record<string, unknown>) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    yield* AutoRefresh.withAutoRefresh(
      writeKey,
      (credentials) => client.pushToProvider({ ...credentials, accountId, version: "stu3", data: bundle })
    )
  })
// #endregion

// #region report
// The user's portability report (MedMij, XML) over a period, `from` and `to` in seconds since the epoch.
const portabilityReport = (key: TokenKey.TokenKey, from: number, to: number) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    return yield* AutoRefresh.withAutoRefresh(key, (credentials) =>
      client.getPortabilityReport({ ...credentials, from, to }))
  })
// #endregion

// ---------------------------------------------------------------------------------------------
// The tests: a user of a read and a write contract on the simulated digi.me.
// ---------------------------------------------------------------------------------------------

const readContract = await Effect.runPromise(TestContract.make("read-contract"))
const writeContract = await Effect.runPromise(TestContract.make("write-contract"))
const readKey = TokenKey.make("user-42", "read-contract")
const writeKey = TokenKey.make("user-42", "write-contract")
const callbackUrl = "https://app.example/digime/callback"

// Both contracts known to the simulated digi.me, the second one a write contract.
const layer = () =>
  Layer.effectDiscard(Effect.flatMap(
    DigimeSimulator.DigimeSimulator,
    (simulator) => simulator.registerContract("write-contract", writeContract.publicKeyPem, { accessType: "w" })
  )).pipe(Layer.provideMerge(DigimeTest.layer({ contracts: [readContract, writeContract] })))

// The user, connected with the read contract, with these files in their library.
const seedUser = (files: ReadonlyArray<DigimeSimulator.FileInput> = []) =>
  Effect.gen(function*() {
    const simulator = yield* DigimeSimulator.DigimeSimulator
    const token = yield* DigimeTest.seedToken(readKey)
    const digimeUserId = token.digimeUserId!
    yield* simulator.addFiles(digimeUserId, files)
    return { simulator, digimeUserId }
  })

// Runs an effect that waits on the Clock (polls), moving the TestClock on until it is done.
const advancing = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    for (let i = 0; i < 100 && fiber.unsafePoll() === null; i++) yield* TestClock.adjust("500 millis")
    return yield* Fiber.join(fiber)
  })

const params = (url: string) => Object.fromEntries(new URL(url).searchParams)

describe("the user's accounts", () => {
  it.effect("listAccounts, then onboardService adds the account the user consents to", () =>
    Effect.gen(function*() {
      const { simulator } = yield* seedUser()
      assert.strictEqual((yield* listAccounts(readKey)).length, 1)
      const onboarding = yield* onboardService(readKey, callbackUrl, 100)
      assert.strictEqual(params(onboarding.url).service, "100")
      const callback = yield* simulator.consent(onboarding.url) // the user clicks Allow
      assert.strictEqual(params(callback).success, "true")
      assert.strictEqual((yield* listAccounts(readKey)).length, 2)
    }).pipe(Effect.provide(layer())))

  it.effect("reauthorizeAccount: the account's sync ends with reauth until the user consents again", () =>
    Effect.gen(function*() {
      const { digimeUserId, simulator } = yield* seedUser([{ name: "a.json", content: "{}" }])
      const [account] = yield* listAccounts(readKey)
      yield* simulator.requireReauth(digimeUserId, account!.id)
      assert.isFalse((yield* listAccounts(readKey))[0]!.accessTokenStatus?.authorized)
      const session = yield* openSession(readKey, [account!.id])
      const list = yield* advancing(waitForFiles(readKey, session.key))
      assert.strictEqual(list.state, "partial")
      assert.isTrue(list.accounts[account!.id]?.error?.reauth)

      const reauthorization = yield* reauthorizeAccount(readKey, account!.id, callbackUrl)
      assert.strictEqual(params(yield* simulator.consent(reauthorization.url)).success, "true")
      assert.isTrue((yield* listAccounts(readKey))[0]!.accessTokenStatus?.authorized)
    }).pipe(Effect.provide(layer())))

  it.effect("revokeAccountPermission, deleteAccount, then deleteUser: nothing is left, the token forgotten", () =>
    Effect.gen(function*() {
      const { digimeUserId, simulator } = yield* seedUser()
      const second = yield* simulator.addAccount(digimeUserId)
      const revokeUrl = yield* revokeAccountPermission(readKey, second.id, "https://app.example/revoked")
      assert.strictEqual(yield* simulator.consent(revokeUrl), "https://app.example/revoked?result=success")
      const revoked = (yield* listAccounts(readKey)).find((account) => account.id === second.id)
      assert.isFalse(revoked?.accessTokenStatus?.authorized)

      yield* deleteAccount(readKey, second.id)
      assert.notInclude((yield* listAccounts(readKey)).map((account) => account.id), second.id)

      yield* deleteUser(readKey)
      assert.strictEqual((yield* simulator.stats).requests.deleteUser, 1)
      const error = yield* Effect.flip(listAccounts(readKey))
      assert.strictEqual(error._tag, "ReauthRequired") // no token stored: the user must connect again
    }).pipe(Effect.provide(layer())))
})

describe("the catalogue", () => {
  it.effect("findSources, sourceFilters, sampleDataSets and contractDetails, without a user", () =>
    Effect.gen(function*() {
      const page = yield* findSources("read-contract", "social")
      assert.deepStrictEqual(page.data.map((source) => source.id), [10])
      assert.strictEqual(page.total, 1)
      const filters = yield* sourceFilters("read-contract")
      assert.isAbove(filters.countries.length, 0)
      assert.isAbove(filters.platforms.length, 0)
      assert.isAbove(filters.categories.length, 0)
      const datasets = yield* sampleDataSets("read-contract", page.data[0]!.id)
      assert.deepStrictEqual(Object.keys(datasets), ["default", "test"])
      assert.strictEqual((yield* contractDetails("read-contract")).accessType, "r")
      assert.strictEqual((yield* contractDetails("write-contract")).accessType, "w")
      const simulator = yield* DigimeSimulator.DigimeSimulator
      assert.isTrue((yield* simulator.requests).every((request) => request.claims?.["access_token"] === undefined))
    }).pipe(Effect.provide(layer())))
})

describe("reading the user's data", () => {
  const posts = {
    objectCount: 0,
    objectType: "post",
    serviceGroup: "social",
    serviceName: "simulated-social",
    schema: { standard: "digime", version: "1.0.0" }
  }
  const files = [
    { name: "posts.json", content: "{\"posts\":[]}", metadata: posts },
    { name: "photos.json", content: "{\"photos\":[]}", compression: "gzip" as const }
  ]

  it.effect("openSession, waitForFiles (listFiles until the sync is over), readText, fileMetadata and readSmall of a file", () =>
    Effect.gen(function*() {
      const { digimeUserId, simulator } = yield* seedUser(files)
      const [account] = yield* listAccounts(readKey)
      yield* simulator.addAccount(digimeUserId) // a second account, left out of the sync
      const session = yield* openSession(readKey, [account!.id])
      const list = yield* advancing(waitForFiles(readKey, session.key))
      assert.strictEqual(list.state, "completed")
      assert.deepStrictEqual(Object.keys(list.accounts), [account!.id])
      assert.deepStrictEqual(list.files.map((file) => file.name).sort(), ["photos.json", "posts.json"])
      assert.strictEqual(yield* readText(readKey, session.key, "photos.json"), "{\"photos\":[]}")
      assert.deepStrictEqual(yield* fileMetadata(readKey, session.key, "posts.json"), posts)
      assert.strictEqual(yield* readSmall(readKey, session.key, "photos.json"), "{\"photos\":[]}")
    }).pipe(Effect.provide(layer())))

  it.effect("saveAllFiles: every file once, decrypted", () =>
    Effect.gen(function*() {
      yield* seedUser(files)
      const saved = new Map<string, string>()
      yield* advancing(saveAllFiles(readKey, (name, data) =>
        Effect.sync(() => {
          saved.set(name, new TextDecoder().decode(data))
        })))
      assert.deepStrictEqual(Object.fromEntries(saved), {
        "posts.json": "{\"posts\":[]}",
        "photos.json": "{\"photos\":[]}"
      })
    }).pipe(Effect.provide(layer())))

  it.effect("portabilityReport: the XML report of the user's accounts", () =>
    Effect.gen(function*() {
      yield* seedUser()
      const [account] = yield* listAccounts(readKey)
      const report = yield* portabilityReport(readKey, 1_700_000_000, 1_700_086_400)
      assert.include(report, `<account id="${account!.id}"`)
      assert.include(report, "from=\"1700000000\"")
    }).pipe(Effect.provide(layer())))
})

describe("pushing", () => {
  // The user connects the write contract (the consent, then the callback).
  const connectWrite = Effect.gen(function*() {
    const simulator = yield* DigimeSimulator.DigimeSimulator
    const url = yield* connectWriteContract(readKey, writeKey, callbackUrl)
    const completed = yield* Authorization.completeAuthorization(yield* simulator.consent(url))
    assert.deepStrictEqual(completed.key, writeKey)
  })

  it.effect("connectWriteContract, then pushJson: the document lands in the library, readable with the read key", () =>
    Effect.gen(function*() {
      const { digimeUserId, simulator } = yield* seedUser()
      yield* connectWrite
      const [account] = yield* listAccounts(readKey)
      yield* pushJson(writeKey, account!.id, { note: "hello" })
      const [pushed] = yield* simulator.pushed
      assert.strictEqual(pushed?.digimeUserId, digimeUserId)
      assert.deepStrictEqual(pushed?.metadata.tags, ["notes"])
      const saved: Array<string> = []
      yield* advancing(
        saveAllFiles(readKey, (_, data) => Effect.sync(() => saved.push(new TextDecoder().decode(data))))
      )
      assert.deepStrictEqual(saved, ["{\"note\":\"hello\"}"])
    }).pipe(Effect.provide(layer())))

  it.effect("pushToProvider: the FHIR document reaches the provider behind the account", () =>
    Effect.gen(function*() {
      const { simulator } = yield* seedUser()
      yield* connectWrite
      const [account] = yield* listAccounts(readKey)
      const bundle = { resourceType: "Bundle", type: "collection", entry: [] }
      yield* pushToProvider(writeKey, account!.id, bundle)
      const [pushed] = yield* simulator.providerPushes
      assert.strictEqual(pushed?.accountId, account!.id)
      assert.deepStrictEqual(pushed?.body, bundle)
    }).pipe(Effect.provide(layer())))
})
