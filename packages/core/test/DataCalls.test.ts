/**
 * The request builders and response processors of the data calls (file list, files, file
 * metadata, pushes, portability report), without HTTP: builders on what they would send,
 * processors on answers built in memory. Every refusal is a typed error naming the field.
 */
import { DataProtocol, type DigimeRequest, FileProtocol, PushProtocol } from "@digime-effect/core"
import { Headers } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Encoding, Redacted, Stream } from "effect"
import { answerTo } from "./fixtures.js"

const credentials = { contractId: "contract-1", accessToken: Redacted.make("access-value") }

const listRequest = FileProtocol.fileListRequest({ ...credentials, sessionKey: "session-1" })

const processList = (status: number, body: unknown) =>
  Effect.flatMap(
    listRequest,
    (request) => FileProtocol.processFileListResponse(answerTo(undefined, status, body), request)
  )

const xMetadata = (value: unknown, encode: (text: string) => string = Encoding.encodeBase64Url) =>
  encode(JSON.stringify(value))

const mapped = {
  objectCount: 1,
  objectType: "media",
  serviceGroup: "social",
  serviceName: "instagram",
  schema: { standard: "fhir", version: "3.0.0" }
}

const streamed = (headers: Record<string, string>, body: Uint8Array = new Uint8Array([1, 2, 3])) => ({
  status: 200,
  headers: Headers.fromInput(headers),
  body: Stream.make(body)
})

const fileRequest = FileProtocol.fileRequest({ ...credentials, sessionKey: "session-1", fileName: "file1.json" })

const processFile = (headers: Record<string, string>) =>
  Effect.flatMap(
    fileRequest,
    (request) => FileProtocol.processFileResponse(streamed(headers), request, "file1.json")
  )

describe("read session", () => {
  it.effect("triggerRequest: a sourceFetchFilter that is not {account: {id: string[]}} is InvalidOptions", () =>
    Effect.gen(function*() {
      const agent = { name: "nodejs", version: "16.1.5" }
      const ok = yield* DataProtocol.triggerRequest(
        { ...credentials, sourceFetchFilter: { account: { id: ["acc-1"] } } },
        agent
      )
      assert.strictEqual(ok.request.url, "permission-access/trigger")
      const error = yield* Effect.flip(DataProtocol.triggerRequest(
        { ...credentials, sourceFetchFilter: { account: { id: [1] } } as never },
        agent
      ))
      assert.strictEqual(error._tag, "InvalidOptions")
      assert.strictEqual(error.field, "options")
    }))
})

describe("file list", () => {
  it.effect("fileListRequest: GET with claims A, the session key encoded in the path, repeatable", () =>
    Effect.gen(function*() {
      const request = yield* FileProtocol.fileListRequest({ ...credentials, sessionKey: "a b/c" })
      assert.strictEqual(request.request.method, "GET")
      assert.strictEqual(request.request.url, "permission-access/query/a%20b%2Fc")
      assert.deepStrictEqual(request.claims, { access_token: "access-value" })
      assert.isTrue(request.idempotent)
      assert.strictEqual(request.operation, "readFileList")
    }))

  it.effect("fileListRequest: a session key that is empty, `..` or holds a control character is InvalidOptions", () =>
    Effect.gen(function*() {
      for (const sessionKey of ["", ".", "..", "a\r\nb"]) {
        const error = yield* Effect.flip(FileProtocol.fileListRequest({ ...credentials, sessionKey }))
        assert.strictEqual(error._tag, "InvalidOptions")
        assert.strictEqual(error.field, "sessionKey")
      }
    }))

  it.effect("a pending list without files is an empty list", () =>
    Effect.gen(function*() {
      const list = yield* processList(200, { status: { state: "pending" } })
      assert.deepStrictEqual(list, { state: "pending", accounts: {}, files: [] })
    }))

  it.effect("a running list: its accounts and files as sent", () =>
    Effect.gen(function*() {
      const file = {
        name: "file1.json",
        updatedDate: 1568716294874,
        schema: { standard: "digime", version: "1.0.0" },
        objectCount: 2,
        objectType: "post",
        serviceGroup: "social",
        serviceName: "instagram"
      }
      const list = yield* processList(201, {
        status: { state: "running", details: { "test-account-id": { state: "running" } } },
        fileList: [file]
      })
      assert.strictEqual(list.state, "running")
      assert.deepStrictEqual(list.accounts, { "test-account-id": { state: "running", error: undefined } })
      assert.deepStrictEqual(list.files, [file])
    }))

  it.effect("an account's error is read in each of the three shapes digi.me's material shows", () =>
    Effect.gen(function*() {
      const list = yield* processList(200, {
        status: {
          state: "partial",
          details: {
            sdk: {
              state: "partial",
              error: {
                code: "ServiceAuthorizationError",
                statusCode: 511,
                message: "Service authorization required",
                reauth: true,
                retryAfter: 30,
                objectTypeErrors: [{ objectType: 7, error: { code: "Throttled", statusCode: 429 } }]
              }
            },
            docs: {
              state: "partial",
              error: { code: "ServiceAuthorizationError", statusCode: 511, error: { message: "m", reauth: true } }
            },
            wiki: { state: "partial", error: { status: "failed", statusCode: 500, message: "boom" } },
            other: { state: "queued" }
          }
        }
      })
      assert.deepStrictEqual(list.accounts.sdk?.error, {
        code: "ServiceAuthorizationError",
        statusCode: 511,
        message: "Service authorization required",
        reauth: true,
        retryAfter: 30,
        objectTypeErrors: [{ objectType: 7, code: "Throttled", statusCode: 429, message: undefined }]
      })
      assert.strictEqual(list.accounts.docs?.error?.message, "m")
      assert.isTrue(list.accounts.docs?.error?.reauth)
      assert.deepStrictEqual(
        [list.accounts.wiki?.error?.code, list.accounts.wiki?.error?.reauth, list.accounts.wiki?.error?.message],
        ["failed", false, "boom"]
      )
      assert.strictEqual(list.accounts.other?.state, "queued")
    }))

  it.effect("an unknown sync state or a file without its name is a ResponseError naming the field", () =>
    Effect.gen(function*() {
      const state = yield* Effect.flip(processList(200, { status: { state: "paused" } }))
      assert.strictEqual(state._tag, "ResponseError")
      assert.include(state.message, "status.state")
      const file = yield* Effect.flip(
        processList(200, { status: { state: "running" }, fileList: [{ updatedDate: 1 }] })
      )
      assert.include(file.message, "fileList.0.name")
      const missing = yield* Effect.flip(processList(200, { fileList: [] }))
      assert.include(missing.message, "status")
      const text = yield* Effect.flip(processList(200, "not json"))
      assert.strictEqual(text._tag, "ResponseError")
    }))

  it.effect("a 401 without a body whose WWW-Authenticate says invalid_token is AccessTokenRejected; a body's code wins", () =>
    Effect.gen(function*() {
      const request = yield* listRequest
      const header = { "www-authenticate": "Bearer error=\"invalid_token\"" }
      const bare = yield* Effect.flip(
        FileProtocol.processFileListResponse(answerTo(undefined, 401, "", header), request)
      )
      assert.strictEqual(bare._tag, "AccessTokenRejected")
      const coded = yield* Effect.flip(
        FileProtocol.processFileListResponse(
          answerTo(undefined, 401, { error: { code: "InsufficientScope" } }, header),
          request
        )
      )
      assert.strictEqual(coded._tag, "ApiError")
      const other = yield* Effect.flip(
        FileProtocol.processFileListResponse(
          answerTo(undefined, 401, "", { "www-authenticate": "Bearer error=\"insufficient_scope\"" }),
          request
        )
      )
      assert.strictEqual(other._tag, "ApiError")
    }))

  it.effect("401 InvalidToken is AccessTokenRejected; a 401 with another code is ApiError", () =>
    Effect.gen(function*() {
      const rejected = yield* Effect.flip(processList(401, { error: { code: "InvalidToken", message: "m" } }))
      assert.strictEqual(rejected._tag, "AccessTokenRejected")
      const other = yield* Effect.flip(processList(401, { error: { code: "InsufficientScope", message: "m" } }))
      assert.strictEqual(other._tag, "ApiError")
    }))
})

describe("files", () => {
  it.effect("fileRequest: GET with claims A, accept octet-stream, both names encoded, repeatable", () =>
    Effect.gen(function*() {
      const request = yield* FileProtocol.fileRequest({ ...credentials, sessionKey: "s", fileName: "a?b#c.json" })
      assert.strictEqual(request.request.method, "GET")
      assert.strictEqual(request.request.url, "permission-access/query/s/a%3Fb%23c.json")
      assert.strictEqual(request.request.headers["accept"], "application/octet-stream")
      assert.deepStrictEqual(request.claims, { access_token: "access-value" })
      assert.isTrue(request.idempotent)
      const error = yield* Effect.flip(FileProtocol.fileRequest({ ...credentials, sessionKey: "s", fileName: ".." }))
      assert.strictEqual(error.field, "fileName")
    }))

  it.effect("x-metadata is read unpadded, padded and in standard base64; the body is passed on unread", () =>
    Effect.gen(function*() {
      const header = { metadata: mapped, compression: "gzip" }
      for (
        const encode of [
          Encoding.encodeBase64Url,
          (text: string) => Encoding.encodeBase64(text).replace(/\+/g, "-").replace(/\//g, "_"),
          Encoding.encodeBase64
        ]
      ) {
        const file = yield* processFile({ "x-metadata": xMetadata(header, encode), "last-modified": "yesterday" })
        assert.deepStrictEqual(file.metadata, mapped)
        assert.strictEqual(file.compression, "gzip")
        assert.strictEqual(file.lastModified, "yesterday")
        assert.strictEqual(file.fileName, "file1.json")
        const body = yield* Stream.runCollect(file.body)
        assert.deepStrictEqual(Chunk.toReadonlyArray(body), [new Uint8Array([1, 2, 3])])
      }
    }))

  it.effect("raw metadata (pushed data) keeps its lower-case keys and any other key", () =>
    Effect.gen(function*() {
      const raw = { mimetype: "application/json", accounts: [{ accountid: "acc-1" }], created: 1, extra: true }
      const file = yield* processFile({ "x-metadata": xMetadata({ metadata: raw }) })
      assert.deepStrictEqual(file.metadata, raw)
      assert.isUndefined(file.compression)
    }))

  it.effect("a missing, unreadable or unexpected x-metadata is a ResponseError that says which", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<[Record<string, string>, string]> = [
        [{}, "missing"],
        [{ "x-metadata": "%%%" }, "base64url"],
        [{ "x-metadata": Encoding.encodeBase64Url("{not json") }, "not JSON"],
        [{ "x-metadata": xMetadata({ metadata: { objectCount: 1 } }) }, "x-metadata: invalid or missing field(s)"]
      ]
      for (const [headers, expected] of cases) {
        const error = yield* Effect.flip(processFile(headers))
        assert.strictEqual(error._tag, "ResponseError")
        assert.include(error.message, expected)
      }
    }))

  it.effect("fileMetadataRequest: HEAD; a 401 is AccessTokenRejected only when www-authenticate says invalid_token", () =>
    Effect.gen(function*() {
      const request = yield* FileProtocol.fileMetadataRequest({ ...credentials, sessionKey: "s", fileName: "f" })
      assert.strictEqual(request.request.method, "HEAD")
      const ok = yield* FileProtocol.processFileMetadataResponse(
        answerTo(undefined, 200, "", { "x-metadata": xMetadata({ metadata: mapped }) }),
        request,
        "f"
      )
      assert.deepStrictEqual(ok.metadata, mapped)
      const rejected = yield* Effect.flip(
        FileProtocol.processFileMetadataResponse(
          answerTo(undefined, 401, "", { "www-authenticate": "Bearer error=\"invalid_token\"" }),
          request,
          "f"
        )
      )
      assert.strictEqual(rejected._tag, "AccessTokenRejected")
      const bare = yield* Effect.flip(
        FileProtocol.processFileMetadataResponse(answerTo(undefined, 401, ""), request, "f")
      )
      assert.strictEqual(bare._tag, "ApiError")
      assert.strictEqual(bare._tag === "ApiError" ? bare.code : undefined, "Unknown")
    }))
})

const signedPayload = (request: DigimeRequest.Request) => request.signedHeaders?.["FileDescriptor"]

describe("pushes", () => {
  const fileDescriptor = { mimeType: "application/json", accounts: [{ accountId: "acc-1" }] } as const

  it.effect("pushRequest: the FileDescriptor to sign, the bytes as they are, never repeated", () =>
    Effect.gen(function*() {
      const data = new TextEncoder().encode("{\"a\":1}")
      const request = yield* PushProtocol.pushRequest({ ...credentials, fileDescriptor, data })
      assert.deepStrictEqual(signedPayload(request), {
        metadata: { mimeType: "application/json", accounts: [{ accountId: "acc-1" }] }
      })
      assert.strictEqual(request.request.url, "permission-access/import")
      assert.strictEqual(request.request.method, "POST")
      assert.strictEqual(request.request.body._tag, "Uint8Array")
      assert.strictEqual(request.request.body.contentType, "application/octet-stream")
      assert.isFalse(request.idempotent)
      assert.deepStrictEqual(request.claims, { access_token: "access-value" })
    }))

  it.effect("pushRequest: a stream is sent as a stream; tags and references travel in the descriptor", () =>
    Effect.gen(function*() {
      const request = yield* PushProtocol.pushRequest({
        ...credentials,
        fileDescriptor: { ...fileDescriptor, tags: ["t"], reference: ["r"] },
        data: Stream.make(new Uint8Array([1]))
      })
      assert.strictEqual(request.request.body._tag, "Stream")
      assert.deepStrictEqual(signedPayload(request), {
        metadata: { mimeType: "application/json", accounts: [{ accountId: "acc-1" }], reference: ["r"], tags: ["t"] }
      })
    }))

  it.effect("pushRequest: a descriptor without accounts or MIME type is InvalidOptions naming it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(PushProtocol.pushRequest({
        ...credentials,
        fileDescriptor: { mimeType: "", accounts: [] as never },
        data: new Uint8Array()
      }))
      assert.strictEqual(error._tag, "InvalidOptions")
      assert.strictEqual(error.field, "fileDescriptor")
      assert.include(error.reason, "metadata.mimeType")
      assert.include(error.reason, "metadata.accounts")
    }))

  it.effect("pushProviderRequest: the account in its header, the version in the path, JSON body", () =>
    Effect.gen(function*() {
      const request = yield* PushProtocol.pushProviderRequest({
        ...credentials,
        accountId: "acc-1",
        version: "stu3",
        data: { resourceType: "Bundle" }
      })
      assert.strictEqual(request.request.url, "permission-access/import/h:accountId/fhir/stu3")
      assert.strictEqual(request.request.headers["accountid"], "acc-1")
      assert.strictEqual(request.request.headers["content-type"], "application/json")
      assert.isFalse(request.idempotent)
    }))

  it.effect("pushProviderRequest: a header value with CR LF, a bad version or a non-object body is InvalidOptions", () =>
    Effect.gen(function*() {
      const base = { ...credentials, accountId: "acc-1", version: "stu3" as const, data: {} }
      const cases = [
        [{ ...base, accountId: "acc\r\nx: y" }, "accountId"],
        [{ ...base, accountId: "" }, "accountId"],
        [{ ...base, version: "4.0.1" as never }, "version"],
        [{ ...base, data: [] as never }, "data"]
      ] as const
      for (const [options, field] of cases) {
        const error = yield* Effect.flip(PushProtocol.pushProviderRequest(options))
        assert.strictEqual(error.field, field)
      }
    }))

  it.effect("processPushResponse: any 2xx; 401 InvalidToken is AccessTokenRejected, others ApiError", () =>
    Effect.gen(function*() {
      const request = yield* PushProtocol.pushRequest({ ...credentials, fileDescriptor, data: new Uint8Array() })
      yield* PushProtocol.processPushResponse(answerTo(undefined, 201, ""), request)
      yield* PushProtocol.processPushResponse(answerTo(undefined, 200, { status: "delivered" }), request)
      const rejected = yield* Effect.flip(
        PushProtocol.processPushResponse(answerTo(undefined, 401, { error: { code: "InvalidToken" } }), request)
      )
      assert.strictEqual(rejected._tag, "AccessTokenRejected")
      const refused = yield* Effect.flip(
        PushProtocol.processPushResponse(answerTo(undefined, 403, { error: { code: "ReadOnlyContract" } }), request)
      )
      assert.strictEqual(refused._tag, "ApiError")
    }))
})

describe("portability report", () => {
  it.effect("without from and to, neither is sent (never the text `undefined`)", () =>
    Effect.gen(function*() {
      const request = yield* DataProtocol.portabilityReportRequest(credentials)
      assert.strictEqual(request.request.url, "export/medmij/report")
      assert.deepStrictEqual(request.request.urlParams, [["format", "xml"]])
      assert.notInclude(JSON.stringify(request.request.urlParams), "undefined")
      const bounded = yield* DataProtocol.portabilityReportRequest({ ...credentials, from: 10, to: 20 })
      assert.deepStrictEqual(bounded.request.urlParams, [["format", "xml"], ["from", "10"], ["to", "20"]])
    }))

  it.effect("from/to that are not whole non-negative seconds are InvalidOptions", () =>
    Effect.gen(function*() {
      for (const from of [-1, 1.5, Number.NaN]) {
        const error = yield* Effect.flip(DataProtocol.portabilityReportRequest({ ...credentials, from }))
        assert.strictEqual(error.field, "from")
      }
    }))

  it.effect("the answer is its body as text", () =>
    Effect.gen(function*() {
      const request = yield* DataProtocol.portabilityReportRequest(credentials)
      const text = yield* DataProtocol.processPortabilityReportResponse(answerTo(undefined, 201, "<report/>"), request)
      assert.strictEqual(text, "<report/>")
      const error = yield* Effect.flip(
        DataProtocol.processPortabilityReportResponse(answerTo(undefined, 500, { error: { code: "Boom" } }), request)
      )
      assert.strictEqual(error._tag, "ApiError")
    }))
})
