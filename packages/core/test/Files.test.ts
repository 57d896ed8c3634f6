/**
 * The user's files through the whole stack on the simulated digi.me: the files Stream (polls on a
 * Schedule, each file once, retries, account states, the overall timeout), single files decrypted
 * as they stream, and pushes, each under `withAutoRefresh`. Time is the TestClock's.
 */
import { AutoRefresh, DigimeClient, Files, TokenKey, TokenManager } from "@digime-effect/core"
import { DigimeSimulator, DigimeTest } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, type Duration, Effect, Redacted, Schedule, Stream, TestClock } from "effect"
import { joinAdvancing } from "./fixtures.js"

const key = TokenKey.make("user-1", DigimeTest.contractId)
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

const seedWithFiles = (files: ReadonlyArray<DigimeSimulator.FileInput>) =>
  Effect.gen(function*() {
    const token = yield* DigimeTest.seedToken(key)
    const simulator = yield* DigimeSimulator.DigimeSimulator
    yield* simulator.addFiles(token.digimeUserId!, files)
    return { token, simulator }
  })

const contents = (count: number) =>
  Array.from(
    { length: count },
    (_, i) => ({ name: `file-${i}.json`, content: JSON.stringify({ i, pad: "x".repeat(i * 37) }) })
  )

const runAll = (options: Files.ReadAllOptions = {}, total: Duration.DurationInput = "2 minutes", steps = 400) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(Stream.runCollect(Files.readAll(key, options)))
    return Chunk.toReadonlyArray(yield* joinAdvancing(fiber, total, steps))
  })

const filesOf = (events: ReadonlyArray<Files.Event>) =>
  events.filter((event): event is Files.FileRead => event._tag === "File")

const fileRequests = (requests: ReadonlyArray<DigimeSimulator.RecordedRequest>, name: string) =>
  requests.filter((request) => request.endpoint === "file" && request.path.endsWith(`/${name}`))

// Moves the TestClock in small steps until `done` holds (at most `steps` steps).
const advanceUntil = (done: Effect.Effect<boolean>, steps = 200) =>
  Effect.gen(function*() {
    for (let i = 0; i < steps && !(yield* done); i++) yield* TestClock.adjust("10 millis")
  })

// The test contract becomes a write contract (pushes allowed, file reads refused).
const writeContract = Effect.gen(function*() {
  const contract = yield* DigimeTest.defaultContract
  const simulator = yield* DigimeSimulator.DigimeSimulator
  yield* simulator.registerContract(contract.contract.contractId, contract.publicKeyPem, { accessType: "w" })
})

const layer = (simulator: Partial<DigimeSimulator.Options> = {}) =>
  DigimeTest.layer({ simulator: { syncPolls: 2, ...simulator } })

describe("Files.readAll", () => {
  it.effect("every file once, decrypted (gzip too), between a running Progress and the final one", () =>
    Effect.gen(function*() {
      const files = [...contents(5), {
        name: "zipped.json",
        content: "{\"zipped\":true}",
        compression: "gzip" as const
      }]
      yield* seedWithFiles(files)
      const events = yield* runAll()
      const read = filesOf(events)
      assert.deepStrictEqual(read.map((event) => event.file.name).sort(), files.map((file) => file.name).sort())
      for (const file of files) {
        const event = read.find((candidate) => candidate.file.name === file.name)!
        assert.strictEqual(text(event.data), file.content)
      }
      assert.strictEqual(events[0]?._tag, "Progress")
      const last = events[events.length - 1]
      assert.strictEqual(last?._tag, "Progress")
      assert.strictEqual(last?._tag === "Progress" ? last.state : undefined, "completed")
      assert.strictEqual(last?._tag === "Progress" ? last.filesListed : undefined, files.length)
    }).pipe(Effect.provide(layer())))

  it.effect("a file updated while the sync runs is read again; an unchanged one is not", () =>
    Effect.gen(function*() {
      const { simulator, token } = yield* seedWithFiles(contents(2))
      const fiber = yield* Effect.fork(Stream.runCollect(Files.readAll(key, { pollInterval: "3 seconds" })))
      // After the first poll, file-0 changes: a later poll lists it with a later updatedDate.
      yield* advanceUntil(Effect.map(simulator.requests, (requests) => requests.some((r) => r.endpoint === "fileList")))
      yield* simulator.addFiles(token.digimeUserId!, [{ name: "file-0.json", content: "changed" }])
      const events = Chunk.toReadonlyArray(yield* joinAdvancing(fiber, "2 minutes", 400))
      const names = filesOf(events).map((event) => event.file.name)
      assert.strictEqual(names.filter((name) => name === "file-1.json").length, 1)
      const versions = filesOf(events).filter((event) => event.file.name === "file-0.json").map((e) => text(e.data))
      assert.strictEqual(versions[versions.length - 1], "changed")
      assert.isAtMost(versions.length, 2)
    }).pipe(Effect.provide(layer({ syncPolls: 3 }))))

  it.effect("an account that needs the user's reauthorization: the sync ends partial and names it", () =>
    Effect.gen(function*() {
      const { simulator, token } = yield* seedWithFiles(contents(1))
      const [account] = yield* simulator.accountsOf(token.digimeUserId!)
      yield* simulator.requireReauth(token.digimeUserId!, account!.id)
      const events = yield* runAll()
      const last = events[events.length - 1]
      assert.strictEqual(last?._tag, "Progress")
      if (last?._tag !== "Progress") return
      assert.strictEqual(last.state, "partial")
      assert.deepStrictEqual(last.needsReauthorization, [account!.id])
      assert.strictEqual(last.accounts[account!.id]?.error?.code, "ServiceAuthorizationError")
    }).pipe(Effect.provide(layer())))

  it.effect("a token that expires while the files stream is refreshed once, and the stream goes on", () =>
    Effect.gen(function*() {
      const { token: seeded } = yield* seedWithFiles(contents(20))
      // Small clock steps: the downloads after the last poll end long before the new token is due.
      const events = yield* runAll({ pollInterval: "20 seconds", concurrency: 2 }, "2 minutes", 2400)
      assert.strictEqual(filesOf(events).length, 20)
      const stats = yield* (yield* DigimeSimulator.DigimeSimulator).stats
      assert.strictEqual(stats.refreshes, 1)
      assert.strictEqual(stats.replays, 0)
      // No event carries a token (the official SDK's readAllFiles could hand back a spent one): the
      // store holds the refreshed token, and it is the one digi.me accepts now.
      assert.isFalse(JSON.stringify(events).includes("access_token"))
      const stored = yield* (yield* TokenManager.TokenManager).get(key)
      assert.notStrictEqual(Redacted.value(stored.token.accessToken.value), Redacted.value(seeded.accessToken.value))
      const client = yield* DigimeClient.DigimeClient
      const accounts = yield* client.readAccounts({
        contractId: key.contractId,
        accessToken: stored.token.accessToken.value
      })
      assert.isAbove(accounts.length, 0)
    }).pipe(Effect.provide(
      DigimeTest.layer({
        // Polls at 0, 20 and 40 seconds; the access token is due at 25 seconds.
        simulator: { syncPolls: 2, accessTokenLifetime: "30 seconds" },
        config: { refreshLeadTime: "5 seconds" }
      })
    )))

  it.effect("a corrupted, then a cut download is tried again and read right", () =>
    Effect.gen(function*() {
      const { simulator } = yield* seedWithFiles([{ name: "a.json", content: "{\"a\":1}" }])
      yield* simulator.injectFault({ _tag: "CorruptEnvelope", fileName: "a.json" })
      yield* simulator.injectFault({ _tag: "DropBody", fileName: "a.json" })
      const events = yield* runAll()
      const failures = events.filter((event): event is Files.FileFailed => event._tag === "FileFailed")
      assert.deepStrictEqual(failures.map((event) => event.error.message), [])
      const [file] = filesOf(events)
      assert.strictEqual(text(file!.data), "{\"a\":1}")
      assert.isAtLeast(fileRequests(yield* simulator.requests, "a.json").length, 2)
      assert.isFalse(events.some((event) => event._tag === "FileFailed"))
    }).pipe(Effect.provide(layer())))

  it.effect("a file that fails every attempt is FileFailed with its typed error; the others are read", () =>
    Effect.gen(function*() {
      const { simulator } = yield* seedWithFiles([...contents(2), { name: "bad.json", content: "x" }])
      for (let i = 0; i < 4; i++) yield* simulator.injectFault({ _tag: "WrongKeyEnvelope", fileName: "bad.json" })
      const events = yield* runAll({ retry: Schedule.spaced("1 second").pipe(Schedule.intersect(Schedule.recurs(3))) })
      const failed = events.filter((event): event is Files.FileFailed => event._tag === "FileFailed")
      assert.strictEqual(failed.length, 1)
      assert.strictEqual(failed[0]!.file.name, "bad.json")
      assert.strictEqual(failed[0]!.error._tag, "FileDecryptionError")
      if (failed[0]!.error._tag === "FileDecryptionError") {
        assert.strictEqual(failed[0]!.error.reason, "KeyUnwrap")
        assert.strictEqual(failed[0]!.error.fileName, "bad.json")
      }
      assert.strictEqual(fileRequests(yield* simulator.requests, "bad.json").length, 4)
      assert.strictEqual(filesOf(events).length, 2)
    }).pipe(Effect.provide(layer())))

  it.effect("a sync that never ends fails with RequestError (Timeout) after the overall timeout", () =>
    Effect.gen(function*() {
      yield* seedWithFiles(contents(1))
      const fiber = yield* Effect.fork(
        Stream.runCollect(Files.readAll(key, { pollInterval: "1 second", timeout: "30 seconds" }))
      )
      const error = yield* Effect.flip(joinAdvancing(fiber, "40 seconds", 200))
      assert.strictEqual(error._tag, "RequestError")
      assert.strictEqual(error._tag === "RequestError" ? error.reason : undefined, "Timeout")
    }).pipe(Effect.provide(layer({ syncPolls: 1_000 }))))

  it.effect("no token stored: ReauthRequired, before any request", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Stream.runCollect(Files.readAll(key)))
      assert.strictEqual(error._tag, "ReauthRequired")
      assert.strictEqual((yield* (yield* DigimeSimulator.DigimeSimulator).requests).length, 0)
    }).pipe(Effect.provide(layer())))

  it.effect("a file refused with a 401 that is not InvalidToken: FileFailed with ApiError, no refresh", () =>
    Effect.gen(function*() {
      const { simulator } = yield* seedWithFiles([{ name: "a.json", content: "{}" }, { name: "b.json", content: "{}" }])
      yield* simulator.injectFault({ _tag: "Status", endpoint: "file", status: 401, code: "InsufficientScope" })
      const events = yield* runAll()
      const failed = events.filter((event): event is Files.FileFailed => event._tag === "FileFailed")
      assert.strictEqual(failed.length, 1)
      assert.strictEqual(failed[0]!.error._tag, "ApiError")
      assert.strictEqual(filesOf(events).length, 1)
      assert.strictEqual((yield* simulator.stats).refreshes, 0)
    }).pipe(Effect.provide(layer())))

  it.effect("a 401 that is not InvalidToken is an ApiError and refreshes nothing", () =>
    Effect.gen(function*() {
      const { simulator } = yield* seedWithFiles(contents(1))
      yield* simulator.injectFault({ _tag: "Status", endpoint: "fileList", status: 401, code: "InsufficientScope" })
      const error = yield* Effect.flip(Stream.runCollect(Files.readAll(key)))
      assert.strictEqual(error._tag, "ApiError")
      assert.strictEqual(error._tag === "ApiError" ? error.code : undefined, "InsufficientScope")
      assert.strictEqual((yield* simulator.stats).refreshes, 0)
    }).pipe(Effect.provide(layer())))
})

describe("single files and pushes", () => {
  it.effect("Files.read: one file decrypted as it streams; readFileMetadata: its metadata alone", () =>
    Effect.gen(function*() {
      yield* seedWithFiles([{ name: "one.json", content: "{\"one\":1}", compression: "gzip" }])
      const client = yield* DigimeClient.DigimeClient
      // A session without a sync from the sources: its files are listed (and downloadable) at once.
      const session = yield* AutoRefresh.withAutoRefresh(
        key,
        (credentials) => client.readSession({ ...credentials, sourceFetch: false })
      )
      const list = yield* AutoRefresh.withAutoRefresh(
        key,
        (credentials) => client.readFileList({ ...credentials, sessionKey: session.key })
      )
      assert.deepStrictEqual(list.files.map((file) => file.name), ["one.json"])
      const fiber = yield* Effect.fork(
        Effect.flatMap(
          Files.read(key, { sessionKey: session.key, fileName: "one.json" }),
          (file) => Effect.map(Stream.runCollect(file.data), (chunks) => ({ file, chunks }))
        )
      )
      const { chunks, file } = yield* joinAdvancing(fiber, "1 second", 20)
      assert.strictEqual(
        text(Chunk.reduce(chunks, new Uint8Array(), (a, b) => new Uint8Array([...a, ...b]))),
        "{\"one\":1}"
      )
      assert.strictEqual(file.compression, "gzip")
      const metadata = yield* AutoRefresh.withAutoRefresh(
        key,
        (credentials) => client.readFileMetadata({ ...credentials, sessionKey: session.key, fileName: "one.json" })
      )
      assert.deepStrictEqual(metadata.metadata, file.metadata)
    }).pipe(Effect.provide(layer())))

  it.effect("a pushed stream whose access token was revoked: refreshed, pushed once and whole, the new token stored", () =>
    Effect.gen(function*() {
      const { simulator, token } = yield* seedWithFiles([])
      yield* writeContract
      const [account] = yield* simulator.accountsOf(token.digimeUserId!)
      yield* simulator.revokeAccessToken(Redacted.value(token.accessToken.value))
      const client = yield* DigimeClient.DigimeClient
      const parts = ["{\"part\":", "1", "}"].map((part) => new TextEncoder().encode(part))
      const fiber = yield* Effect.fork(AutoRefresh.withAutoRefresh(key, (credentials) =>
        client.pushData({
          ...credentials,
          fileDescriptor: { mimeType: "application/json", accounts: [{ accountId: account!.id }] },
          data: Stream.fromIterable(parts)
        })))
      yield* joinAdvancing(fiber, "5 seconds", 50)
      const pushed = yield* simulator.pushed
      assert.strictEqual(pushed.length, 1)
      assert.strictEqual(text(pushed[0]!.body), "{\"part\":1}")
      assert.strictEqual((yield* simulator.stats).refreshes, 1)
      const stored = yield* (yield* TokenManager.TokenManager).get(key)
      assert.notStrictEqual(Redacted.value(stored.token.accessToken.value), Redacted.value(token.accessToken.value))
    }).pipe(Effect.provide(layer())))

  it.effect("a failing pushed stream fails the push with the stream's own error", () =>
    Effect.gen(function*() {
      const { simulator, token } = yield* seedWithFiles([])
      yield* writeContract
      const [account] = yield* simulator.accountsOf(token.digimeUserId!)
      const client = yield* DigimeClient.DigimeClient
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, (credentials) =>
        client.pushData({
          ...credentials,
          fileDescriptor: { mimeType: "text/plain", accounts: [{ accountId: account!.id }] },
          data: Stream.concat(Stream.make(new Uint8Array([1])), Stream.fail("disk gone" as const))
        })))
      assert.strictEqual(error, "disk gone")
      assert.strictEqual((yield* simulator.pushed).length, 0)
    }).pipe(Effect.provide(layer())))
})
