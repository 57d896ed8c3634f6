/**
 * `DiscoveryProtocol` without HTTP: the catalogue builders checked on what they would send, their
 * processors on answers built in memory.
 */
import type { DigimeRequest } from "@digime-effect/core"
import * as DiscoveryProtocol from "@digime-effect/core/DiscoveryProtocol"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { answerTo, jsonBodyOf } from "./fixtures.js"

const contractId = "contract-1"

const errorBody = { error: { code: "ValidationErrors", message: "Parameter validation errors", reference: "r-1" } }

/** What every catalogue call shares: the contract, claim set B (nothing of its own), repeatable. */
const assertClientCall = (request: DigimeRequest.Request, operation: string) => {
  assert.strictEqual(request.operation, operation)
  assert.strictEqual(request.contractId, contractId)
  assert.deepStrictEqual(request.claims, {})
  assert.isTrue(request.idempotent)
}

describe("DiscoveryProtocol.sourcesRequest", () => {
  it.effect("POST discovery/sources with the SDK's default filter when the query sets none", () =>
    Effect.gen(function*() {
      const request = yield* DiscoveryProtocol.sourcesRequest({ contractId })
      assertClientCall(request, "querySources")
      assert.strictEqual(request.request.method, "POST")
      assert.strictEqual(request.request.url, "discovery/sources")
      assert.strictEqual(request.request.headers["content-type"], "application/json")
      assert.deepStrictEqual(jsonBodyOf(request), {
        query: { filter: { type: { id: [1] }, publishedStatus: ["approved"] } }
      })
    }))

  it.effect("the caller's paging, sorting, search and filter are sent; a default fills only what is absent", () =>
    Effect.gen(function*() {
      const request = yield* DiscoveryProtocol.sourcesRequest({
        contractId,
        limit: 10,
        offset: 20,
        sort: { name: "desc" },
        query: {
          search: { name: "bank" },
          include: ["service.name"],
          filter: { type: { id: [2] }, country: { id: [7] } }
        }
      })
      assert.deepStrictEqual(jsonBodyOf(request), {
        limit: 10,
        offset: 20,
        sort: { name: "desc" },
        query: {
          search: { name: "bank" },
          include: ["service.name"],
          filter: { type: { id: [2] }, country: { id: [7] }, publishedStatus: ["approved"] }
        }
      })
      // An explicit value, even an empty list, is the caller's choice.
      const all = yield* DiscoveryProtocol.sourcesRequest({
        contractId,
        query: { filter: { publishedStatus: [], type: { id: [1, 2] } } }
      })
      assert.deepStrictEqual(jsonBodyOf(all), { query: { filter: { publishedStatus: [], type: { id: [1, 2] } } } })
    }))

  it.effect("withDefaultFilter leaves the rest of the query as it is", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(
        DiscoveryProtocol.withDefaultFilter({ limit: 5, query: { queryString: "x", filter: { id: [3] } } }),
        {
          limit: 5,
          query: { queryString: "x", filter: { id: [3], type: { id: [1] }, publishedStatus: ["approved"] } }
        }
      )
    }))

  it.effect("bad options are InvalidOptions naming the field, before any request", () =>
    Effect.gen(function*() {
      const errors = yield* Effect.all([
        Effect.flip(DiscoveryProtocol.sourcesRequest({ contractId: " " })),
        Effect.flip(DiscoveryProtocol.sourcesRequest({ contractId, limit: -1 })),
        Effect.flip(DiscoveryProtocol.sourcesRequest({ contractId, offset: 1.5 })),
        Effect.flip(DiscoveryProtocol.sourcesRequest({
          contractId,
          // What an untyped caller could pass.
          query: { filter: { publishedStatus: ["published" as "approved"] } }
        })),
        Effect.flip(DiscoveryProtocol.sourcesRequest({ contractId, sort: { name: "up" as "asc" } }))
      ])
      assert.deepStrictEqual(errors.map((error) => [error._tag, error.operation, error.field]), [
        ["InvalidOptions", "querySources", "contractId"],
        ["InvalidOptions", "querySources", "limit"],
        ["InvalidOptions", "querySources", "offset"],
        ["InvalidOptions", "querySources", "query.filter.publishedStatus.0"],
        ["InvalidOptions", "querySources", "sort.name"]
      ])
      assert.notInclude(errors[3].message, "published\"")
    }))
})

describe("DiscoveryProtocol.processSourcesResponse", () => {
  it.effect("a page of sources: only id is required, every other field is kept", () =>
    Effect.gen(function*() {
      const request = yield* DiscoveryProtocol.sourcesRequest({ contractId })
      const source = {
        id: 17,
        name: "Bank",
        publishedStatus: "approved",
        service: { id: 3, name: "Bank service" },
        json: { authorisation: { type: "saas" } }
      }
      const page = yield* DiscoveryProtocol.processSourcesResponse(
        answerTo(request, 200, { data: [source, { id: 18 }], limit: 10, offset: 0, total: 2 }),
        request
      )
      assert.deepStrictEqual(page, { data: [source, { id: 18 }], limit: 10, offset: 0, total: 2 })
    }))

  it.effect("a malformed page is ResponseError naming the field, never its value", () =>
    Effect.gen(function*() {
      const request = yield* DiscoveryProtocol.sourcesRequest({ contractId })
      const noTotal = yield* Effect.flip(
        DiscoveryProtocol.processSourcesResponse(answerTo(request, 200, { data: [], limit: 1, offset: 0 }), request)
      )
      assert.strictEqual(noTotal._tag, "ResponseError")
      assert.include(noTotal.message, "total")
      const badId = yield* Effect.flip(DiscoveryProtocol.processSourcesResponse(
        answerTo(request, 200, { data: [{ id: "source-secret-17" }], limit: 1, offset: 0, total: 1 }),
        request
      ))
      assert.strictEqual(badId._tag, "ResponseError")
      assert.include(badId.message, "data.0.id")
      assert.notInclude(badId.message, "source-secret-17")
      const notJson = yield* Effect.flip(
        DiscoveryProtocol.processSourcesResponse(answerTo(request, 200, "<html>"), request)
      )
      assert.strictEqual(notJson._tag === "ResponseError" && notJson.description, "the body is not JSON")
      assert.strictEqual(notJson._tag === "ResponseError" && notJson.operation, "querySources")
    }))

  it.effect("an error body is ApiError with digi.me's code; with no user in the claims, even a 401", () =>
    Effect.gen(function*() {
      const request = yield* DiscoveryProtocol.sourcesRequest({ contractId })
      const error = yield* Effect.flip(
        DiscoveryProtocol.processSourcesResponse(answerTo(request, 400, errorBody), request)
      )
      assert.strictEqual(error._tag, "ApiError")
      assert.strictEqual(error._tag === "ApiError" && error.code, "ValidationErrors")
      assert.strictEqual(error._tag === "ApiError" && error.status, 400)
      assert.strictEqual(error._tag === "ApiError" && error.reference, "r-1")
      const unauthorized = yield* Effect.flip(DiscoveryProtocol.processSourcesResponse(
        answerTo(request, 401, { error: { code: "InvalidToken", message: "The token is invalid" } }),
        request
      ))
      assert.strictEqual(unauthorized._tag, "ApiError")
      assert.strictEqual(unauthorized._tag === "ApiError" && unauthorized.code, "InvalidToken")
    }))
})

describe("DiscoveryProtocol: countries, platforms, categories", () => {
  const calls = [
    ["queryCountries", "discovery/countries", DiscoveryProtocol.countriesRequest],
    ["queryPlatforms", "discovery/platforms", DiscoveryProtocol.platformsRequest],
    ["queryCategories", "discovery/categories", DiscoveryProtocol.categoriesRequest]
  ] as const

  for (const [operation, path, build] of calls) {
    it.effect(`${operation}: POST ${path}, no body without a query, the query as the body otherwise`, () =>
      Effect.gen(function*() {
        const bare = yield* build({ contractId })
        assertClientCall(bare, operation)
        assert.strictEqual(bare.request.method, "POST")
        assert.strictEqual(bare.request.url, path)
        assert.strictEqual(bare.request.body._tag, "Empty")
        assert.strictEqual(bare.request.headers["content-type"], "application/json")
        const queried = yield* build({ contractId, query: { include: ["resource"], filter: { id: [1, 2] } } })
        assertClientCall(queried, operation)
        assert.deepStrictEqual(jsonBodyOf(queried), { query: { include: ["resource"], filter: { id: [1, 2] } } })
      }))
  }

  it.effect("bad options are InvalidOptions naming the field", () =>
    Effect.gen(function*() {
      const errors = yield* Effect.all([
        Effect.flip(DiscoveryProtocol.countriesRequest({ contractId: "" })),
        Effect.flip(DiscoveryProtocol.platformsRequest({
          contractId,
          query: { filter: { id: ["1" as unknown as number] } }
        })),
        Effect.flip(DiscoveryProtocol.categoriesRequest({
          contractId,
          query: { include: [3 as unknown as string] }
        }))
      ])
      assert.deepStrictEqual(errors.map((error) => [error.operation, error.field]), [
        ["queryCountries", "contractId"],
        ["queryPlatforms", "query.filter.id.0"],
        ["queryCategories", "query.include.0"]
      ])
    }))

  it.effect("each processor returns the data list, other fields kept", () =>
    Effect.gen(function*() {
      const countries = yield* DiscoveryProtocol.countriesRequest({ contractId })
      assert.deepStrictEqual(
        yield* DiscoveryProtocol.processCountriesResponse(
          answerTo(countries, 200, { data: [{ id: 1, code: "NL", name: "Netherlands", resource: { url: "u" } }] }),
          countries
        ),
        [{ id: 1, code: "NL", name: "Netherlands", resource: { url: "u" } }]
      )
      const platforms = yield* DiscoveryProtocol.platformsRequest({ contractId })
      assert.deepStrictEqual(
        yield* DiscoveryProtocol.processPlatformsResponse(
          answerTo(platforms, 200, { data: [{ id: 2, name: "Web", reference: "web" }] }),
          platforms
        ),
        [{ id: 2, name: "Web", reference: "web" }]
      )
      const categories = yield* DiscoveryProtocol.categoriesRequest({ contractId })
      assert.deepStrictEqual(
        yield* DiscoveryProtocol.processCategoriesResponse(
          answerTo(categories, 200, { data: [{ id: 3, categoryTypeId: 1, title: "Health", subTitle: "s" }] }),
          categories
        ),
        [{ id: 3, categoryTypeId: 1, title: "Health", subTitle: "s" }]
      )
    }))

  it.effect("a malformed answer is ResponseError naming the field; an error body is ApiError", () =>
    Effect.gen(function*() {
      const request = yield* DiscoveryProtocol.countriesRequest({ contractId })
      const noData = yield* Effect.flip(DiscoveryProtocol.processCountriesResponse(answerTo(request, 200, {}), request))
      assert.strictEqual(noData._tag, "ResponseError")
      assert.include(noData.message, "data")
      const platforms = yield* DiscoveryProtocol.platformsRequest({ contractId })
      const badName = yield* Effect.flip(DiscoveryProtocol.processPlatformsResponse(
        answerTo(platforms, 200, { data: [{ id: 1, name: 404 }] }),
        platforms
      ))
      assert.strictEqual(badName._tag, "ResponseError")
      assert.include(badName.message, "data.0.name")
      const categories = yield* DiscoveryProtocol.categoriesRequest({ contractId })
      const notJson = yield* Effect.flip(
        DiscoveryProtocol.processCategoriesResponse(answerTo(categories, 200, "not json"), categories)
      )
      assert.strictEqual(notJson._tag === "ResponseError" && notJson.description, "the body is not JSON")
      const error = yield* Effect.flip(
        DiscoveryProtocol.processCategoriesResponse(answerTo(categories, 500, errorBody), categories)
      )
      assert.strictEqual(error._tag === "ApiError" && error.code, "ValidationErrors")
    }))
})

describe("DiscoveryProtocol: sample datasets", () => {
  it.effect("GET permission-access/sample/datasets/{sourceId}, the id checked and percent-encoded", () =>
    Effect.gen(function*() {
      const request = yield* DiscoveryProtocol.sampleDataSetsRequest({ contractId, sourceId: 24 })
      assertClientCall(request, "getServiceSampleDataSets")
      assert.strictEqual(request.request.method, "GET")
      assert.strictEqual(request.request.url, "permission-access/sample/datasets/24")
      assert.strictEqual(request.request.body._tag, "Empty")
      const text = yield* DiscoveryProtocol.sampleDataSetsRequest({ contractId, sourceId: "a/b c?d#e%" })
      assert.strictEqual(text.request.url, "permission-access/sample/datasets/a%2Fb%20c%3Fd%23e%25")
    }))

  it.effect("a source id that is not a usable path segment is InvalidOptions (sourceId)", () =>
    Effect.gen(function*() {
      const ids: ReadonlyArray<number | string> = [-1, 1.5, Number.NaN, "", "  ", ".", "..", "a\nb", "a\u0000"]
      const errors = yield* Effect.forEach(ids, (sourceId) =>
        Effect.flip(DiscoveryProtocol.sampleDataSetsRequest({ contractId, sourceId })))
      for (const error of errors) {
        assert.strictEqual(error._tag, "InvalidOptions")
        assert.strictEqual(error.operation, "getServiceSampleDataSets")
        assert.strictEqual(error.field, "sourceId")
      }
      const noContract = yield* Effect.flip(DiscoveryProtocol.sampleDataSetsRequest({ contractId: "", sourceId: 1 }))
      assert.strictEqual(noContract.field, "contractId")
    }))

  it.effect("processSampleDataSetsResponse: the datasets by id; a malformed one names its field", () =>
    Effect.gen(function*() {
      const request = yield* DiscoveryProtocol.sampleDataSetsRequest({ contractId, sourceId: 24 })
      const sets = {
        default: { description: "", name: "default" },
        test: { description: "Test data", name: "test" }
      }
      assert.deepStrictEqual(
        yield* DiscoveryProtocol.processSampleDataSetsResponse(answerTo(request, 200, sets), request),
        sets
      )
      const malformed = yield* Effect.flip(DiscoveryProtocol.processSampleDataSetsResponse(
        answerTo(request, 200, { default: { name: "default" } }),
        request
      ))
      assert.strictEqual(malformed._tag, "ResponseError")
      assert.include(malformed.message, "default.description")
      const notFound = yield* Effect.flip(DiscoveryProtocol.processSampleDataSetsResponse(
        answerTo(request, 404, { error: { code: "NotFound", message: "no such source" } }),
        request
      ))
      assert.strictEqual(notFound._tag === "ApiError" && notFound.code, "NotFound")
      const notJson = yield* Effect.flip(
        DiscoveryProtocol.processSampleDataSetsResponse(answerTo(request, 200, "{"), request)
      )
      assert.strictEqual(notJson._tag === "ResponseError" && notJson.description, "the body is not JSON")
    }))
})

describe("DiscoveryProtocol: contract details", () => {
  const details = {
    accessType: "r" as const,
    application: { id: "app-1", name: "My app", resources: { logo: "https://x/logo.png" }, status: 1 },
    certificate: "certificate",
    certificateContractSchemaVersion: "2",
    expirationDate: 1_900_000_000_000,
    id: "contract-1",
    partnerId: "partner-1",
    type: "contract"
  }

  it.effect("GET permission-access/contract, a JSON content type and no body", () =>
    Effect.gen(function*() {
      const request = yield* DiscoveryProtocol.contractDetailsRequest({ contractId })
      assertClientCall(request, "getContractDetails")
      assert.strictEqual(request.request.method, "GET")
      assert.strictEqual(request.request.url, "permission-access/contract")
      assert.strictEqual(request.request.headers["content-type"], "application/json")
      assert.strictEqual(request.request.body._tag, "Empty")
      const error = yield* Effect.flip(DiscoveryProtocol.contractDetailsRequest({ contractId: "" }))
      assert.strictEqual(error.field, "contractId")
    }))

  it.effect("processContractDetailsResponse: every field required, each refusal named", () =>
    Effect.gen(function*() {
      const request = yield* DiscoveryProtocol.contractDetailsRequest({ contractId })
      assert.deepStrictEqual(
        yield* DiscoveryProtocol.processContractDetailsResponse(answerTo(request, 200, details), request),
        details
      )
      const { partnerId: _, ...withoutPartner } = details
      const missing = yield* Effect.flip(
        DiscoveryProtocol.processContractDetailsResponse(answerTo(request, 200, withoutPartner), request)
      )
      assert.strictEqual(missing._tag, "ResponseError")
      assert.include(missing.message, "partnerId")
      const badAccess = yield* Effect.flip(DiscoveryProtocol.processContractDetailsResponse(
        answerTo(request, 200, { ...details, accessType: "rw-secret" }),
        request
      ))
      assert.include(badAccess.message, "accessType")
      assert.notInclude(badAccess.message, "rw-secret")
      const badStatus = yield* Effect.flip(DiscoveryProtocol.processContractDetailsResponse(
        answerTo(request, 200, { ...details, application: { ...details.application, status: "on" } }),
        request
      ))
      assert.include(badStatus.message, "application.status")
      const error = yield* Effect.flip(
        DiscoveryProtocol.processContractDetailsResponse(answerTo(request, 403, errorBody), request)
      )
      assert.strictEqual(error._tag === "ApiError" && error.status, 403)
    }))
})
