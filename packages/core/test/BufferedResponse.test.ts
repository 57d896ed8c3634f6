import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Buffered from "../src/internal/bufferedResponse.js"

const assertion = "eyJhbGciOiJQUzUxMiJ9.claims.signature"

const answered = () => {
  const request = HttpClientRequest.get("https://api.example/v1/permission-access/accounts").pipe(
    HttpClientRequest.setUrlParam("page", "2"),
    HttpClientRequest.setHeader("authorization", `Bearer ${assertion}`)
  )
  const body = new TextEncoder().encode(`[{"id":"a"}]`)
  const source = HttpClientResponse.fromWeb(
    request,
    new Response(body, { status: 200, headers: { "content-type": "application/json" } })
  )
  return Buffered.make(source, source.headers, body)
}

describe("BufferedResponse", () => {
  it("its request is the method, the URL and its parameters only: never the assertion", () => {
    const response = answered()
    const request = response.request
    assert.strictEqual(request.method, "GET")
    assert.strictEqual(request.url, "https://api.example/v1/permission-access/accounts")
    assert.deepStrictEqual(request.urlParams, [["page", "2"]])
    assert.isUndefined(request.headers["authorization"])
    assert.notInclude(JSON.stringify(response), assertion)
    assert.notInclude(JSON.stringify(request), assertion)
    // Made once: the same request every time.
    assert.strictEqual(response.request, request)
  })

  it.effect("reads its body as often as asked, in any form", () =>
    Effect.gen(function*() {
      const response = answered()
      assert.deepStrictEqual(yield* response.json, [{ id: "a" }])
      assert.strictEqual(yield* response.text, `[{"id":"a"}]`)
      assert.strictEqual((yield* response.arrayBuffer).byteLength, 12)
      assert.strictEqual(response.status, 200)
    }))

  it.effect("a body that is not JSON is a ResponseError (Decode) whose request holds no assertion", () =>
    Effect.gen(function*() {
      const request = HttpClientRequest.get("https://api.example/v1/x").pipe(
        HttpClientRequest.setHeader("authorization", `Bearer ${assertion}`)
      )
      const body = new TextEncoder().encode("not json")
      const source = HttpClientResponse.fromWeb(request, new Response(body, { status: 200 }))
      const error = yield* Effect.flip(Buffered.make(source, source.headers, body).json)
      assert.strictEqual(error._tag, "ResponseError")
      assert.strictEqual(error.reason, "Decode")
      assert.isUndefined(error.request.headers["authorization"])
      assert.notInclude(JSON.stringify(error), assertion)
    }))
})
