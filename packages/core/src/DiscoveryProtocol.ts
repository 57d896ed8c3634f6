/**
 * digi.me's catalogue calls, each as a request builder (`xRequest`) and a response processor
 * (`processXResponse`, a function of the HTTP answer, testable without HTTP), and the models they
 * return: the sources a user can onboard (`discovery/sources`), the countries, platforms and
 * categories that filter them, the sample datasets of a source and the details of a contract.
 *
 * None of these calls is made for a user: the client assertion carries no access token (claim
 * set B of the data protocol), so they never fail with `AccessTokenRejected` and need no
 * `withAutoRefresh`. All of them only read, and may be repeated on a transient failure.
 *
 * @see digi.me data protocol §7
 * @since 0.2.0
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { ApiError, ResponseError } from "./DigimeError.js"
import { InvalidOptions } from "./DigimeError.js"
import type { Request } from "./DigimeRequest.js"
import * as Calls from "./internal/calls.js"
import * as Protocol from "./internal/protocol.js"

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

const Rest = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/**
 * One source of the catalogue. digi.me promises only its numeric `id`; everything else it sends
 * (`name`, `resource`, `service`, `publishedStatus`, `json`, and whatever the `include` of the
 * query asked for) is kept as it arrived.
 *
 * @since 0.2.0
 * @category schemas
 */
export const Source = Schema.Struct({ id: Schema.Number }, Rest)

/**
 * @since 0.2.0
 * @category models
 */
export type Source = typeof Source.Type

/**
 * One page of the sources catalogue: the sources, the `limit` and `offset` digi.me applied, and
 * how many sources match the query in all (`total`).
 *
 * @since 0.2.0
 * @category schemas
 */
export const SourcesPage = Schema.Struct({
  data: Schema.Array(Source),
  limit: Schema.Number,
  offset: Schema.Number,
  total: Schema.Number
})

/**
 * @since 0.2.0
 * @category models
 */
export type SourcesPage = typeof SourcesPage.Type

/**
 * A country of the catalogue; the fields not named here (`resource`, …) are kept as they arrived.
 *
 * @since 0.2.0
 * @category schemas
 */
export const Country = Schema.Struct({
  id: Schema.Number,
  code: Schema.optional(Schema.String),
  name: Schema.optional(Schema.String)
}, Rest)

/**
 * @since 0.2.0
 * @category models
 */
export type Country = typeof Country.Type

/**
 * A platform of the catalogue; the fields not named here are kept as they arrived.
 *
 * @since 0.2.0
 * @category schemas
 */
export const Platform = Schema.Struct({
  id: Schema.Number,
  name: Schema.optional(Schema.String),
  reference: Schema.optional(Schema.String)
}, Rest)

/**
 * @since 0.2.0
 * @category models
 */
export type Platform = typeof Platform.Type

/**
 * A category of the catalogue; the fields not named here (`categoryTypeId`, `resource`, …) are
 * kept as they arrived.
 *
 * @since 0.2.0
 * @category schemas
 */
export const Category = Schema.Struct({
  id: Schema.Number,
  name: Schema.optional(Schema.String),
  reference: Schema.optional(Schema.String),
  title: Schema.optional(Schema.String),
  subTitle: Schema.optional(Schema.String),
  expandedTitle: Schema.optional(Schema.String),
  expandedSubTitle: Schema.optional(Schema.String)
}, Rest)

/**
 * @since 0.2.0
 * @category models
 */
export type Category = typeof Category.Type

/**
 * A sample dataset of a source: its id (the key it is listed under) goes into `sampleDataSet` of
 * an onboarding URL.
 *
 * @since 0.2.0
 * @category schemas
 */
export const SampleDataSet = Schema.Struct({ name: Schema.String, description: Schema.String })

/**
 * @since 0.2.0
 * @category models
 */
export type SampleDataSet = typeof SampleDataSet.Type

/**
 * The sample datasets of a source, by dataset id.
 *
 * @since 0.2.0
 * @category schemas
 */
export const SampleDataSets = Schema.Record({ key: Schema.String, value: SampleDataSet })

/**
 * @since 0.2.0
 * @category models
 */
export type SampleDataSets = typeof SampleDataSets.Type

/**
 * The details digi.me keeps of a contract. digi.me does not document what `type`, `status`,
 * `expirationDate` and the certificate fields mean, nor their units: they are passed on as sent.
 *
 * @since 0.2.0
 * @category schemas
 */
export const ContractDetails = Schema.Struct({
  id: Schema.String,
  accessType: Schema.Literal("r", "w"),
  application: Schema.Struct({
    id: Schema.String,
    name: Schema.String,
    resources: Rest,
    status: Schema.Number
  }),
  certificate: Schema.String,
  certificateContractSchemaVersion: Schema.String,
  expirationDate: Schema.Number,
  partnerId: Schema.String,
  type: Schema.String
})

/**
 * @since 0.2.0
 * @category models
 */
export type ContractDetails = typeof ContractDetails.Type

/**
 * The body of `discovery/sources`, every field optional: paging (`limit`, `offset`), sorting by
 * name, and `query` (`search`, `queryString`, `include`: extra fields to return, `filter`).
 *
 * @since 0.2.0
 * @category models
 */
export type SourcesQuery = typeof Protocol.SourcesQuery.Type

/**
 * The body of `discovery/countries`, `…/platforms` and `…/categories`: fields to `include` and
 * ids to `filter` on.
 *
 * @since 0.2.0
 * @category models
 */
export type CatalogueQuery = typeof Protocol.CatalogueQuery.Type

/**
 * What a catalogue call needs: the contract whose key signs it (no user).
 *
 * @since 0.2.0
 * @category models
 */
export interface ContractOptions {
  readonly contractId: string
}

// ---------------------------------------------------------------------------------------------
// Machinery
// ---------------------------------------------------------------------------------------------

const clientRequest = (
  operation: string,
  contractId: string,
  request: HttpClientRequest.HttpClientRequest
): Effect.Effect<Request, InvalidOptions> =>
  Effect.as(Calls.nonEmpty(operation, "contractId", contractId), {
    operation,
    contractId,
    request,
    // Claim set B: the signer adds `client_id`, `nonce` and `timestamp`, nothing else.
    claims: {},
    idempotent: true
  })

// The caller's body checked with its wire schema; a value it refuses names its field (the path
// of the first refused value), never the value.
const withBody = <A, I>(
  operation: string,
  request: HttpClientRequest.HttpClientRequest,
  schema: Schema.Schema<A, I>,
  body: A
): Effect.Effect<HttpClientRequest.HttpClientRequest, InvalidOptions> =>
  Schema.encode(schema)(body).pipe(
    Effect.mapError((error) => {
      const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
      const field = issue === undefined || issue.path.length === 0 ? "query" : issue.path.map(String).join(".")
      return new InvalidOptions({ operation, field, reason: "is not a valid value" })
    }),
    Effect.flatMap((encoded) =>
      Effect.mapError(
        HttpClientRequest.bodyJson(request, encoded),
        () => new InvalidOptions({ operation, field: "query", reason: "cannot be encoded as JSON" })
      )
    )
  )

// A path segment taken from the caller: a non-negative integer, or a string that
// `Calls.pathSegment` accepts (no control characters, not "." or "..", which URL resolution would
// read as a move in the path), percent-encoded.
const pathSegment = (
  operation: string,
  field: string,
  value: string | number
): Effect.Effect<string, InvalidOptions> =>
  typeof value === "number"
    ? Number.isSafeInteger(value) && value >= 0
      ? Effect.succeed(String(value))
      : Effect.fail(new InvalidOptions({ operation, field, reason: "must be a non-negative integer" }))
    : Effect.zipRight(Calls.nonEmpty(operation, field, value), Calls.pathSegment(operation, field, value))

const DataOf = <A, I>(item: Schema.Schema<A, I>) => Schema.Struct({ data: Schema.Array(item) })

// ---------------------------------------------------------------------------------------------
// discovery/sources
// ---------------------------------------------------------------------------------------------

/**
 * The filter digi.me's SDK puts into every sources query that does not set it: pull sources
 * (`type` 1; 2 is push) that are published (`publishedStatus` "approved").
 *
 * @since 0.2.0
 * @category constructors
 */
export const withDefaultFilter = (query: SourcesQuery): SourcesQuery => {
  const filter = query.query?.filter
  return {
    ...query,
    query: {
      ...query.query,
      filter: {
        ...filter,
        type: filter?.type ?? { id: [1] },
        publishedStatus: filter?.publishedStatus ?? ["approved"]
      }
    }
  }
}

/**
 * `POST discovery/sources`: a page of the sources a user can onboard (data protocol §7.1). The
 * contract must be a read contract.
 *
 * The SDK's defaults are added (`withDefaultFilter`): when the query sets no `filter.type`, only
 * pull sources (`{id: [1]}`) are asked for, and when it sets no `filter.publishedStatus`, only
 * approved ones. digi.me's own defaults are not documented, and these are the sources an
 * application can send a user to; with the same body, the answer is the one an SDK user gets. A
 * caller who wants other sources says so (`type: {id: [1, 2]}`, `publishedStatus: ["approved",
 * "sampledataonly"]`, …): a value given, even an empty list, is sent as it is.
 *
 * Repeatable. Next: `processSourcesResponse`.
 *
 * @see digi.me data protocol §7.1
 * @since 0.2.0
 * @category constructors
 */
export const sourcesRequest = (options: ContractOptions & SourcesQuery): Effect.Effect<Request, InvalidOptions> =>
  Effect.flatMap(
    withBody(
      "querySources",
      HttpClientRequest.post("discovery/sources"),
      Protocol.SourcesQuery,
      withDefaultFilter(Calls.withoutUndefined({
        limit: options.limit,
        offset: options.offset,
        sort: options.sort,
        query: options.query
      }))
    ),
    (request) => clientRequest("querySources", options.contractId, request)
  )

/**
 * Reads the answer to `sourcesRequest`: `{data, limit, offset, total}`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processSourcesResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<SourcesPage, ApiError | ResponseError> => Calls.decodeSuccess(request, response, SourcesPage, false)

// ---------------------------------------------------------------------------------------------
// discovery/countries, …/platforms, …/categories
// ---------------------------------------------------------------------------------------------

const catalogueRequest = (
  operation: string,
  path: string,
  options: ContractOptions & { readonly query?: CatalogueQuery["query"] | undefined }
): Effect.Effect<Request, InvalidOptions> =>
  Effect.flatMap(
    options.query === undefined
      // No query, no body: the SDK then sends an empty POST, still with a JSON content type.
      ? Effect.succeed(
        HttpClientRequest.post(path).pipe(HttpClientRequest.setHeader("content-type", "application/json"))
      )
      : withBody(operation, HttpClientRequest.post(path), Protocol.CatalogueQuery, { query: options.query }),
    (request) => clientRequest(operation, options.contractId, request)
  )

/**
 * What a query of countries, platforms or categories may ask for; without `query`, the request
 * has no body.
 *
 * @since 0.2.0
 * @category models
 */
export interface CatalogueOptions extends ContractOptions {
  readonly query?: CatalogueQuery["query"] | undefined
}

/**
 * `POST discovery/countries` (data protocol §7.2). Repeatable. Next: `processCountriesResponse`.
 *
 * @see digi.me data protocol §7.2
 * @since 0.2.0
 * @category constructors
 */
export const countriesRequest = (options: CatalogueOptions): Effect.Effect<Request, InvalidOptions> =>
  catalogueRequest("queryCountries", "discovery/countries", options)

/**
 * Reads the answer to `countriesRequest`: `{data}`, the countries.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processCountriesResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<ReadonlyArray<Country>, ApiError | ResponseError> =>
  Effect.map(Calls.decodeSuccess(request, response, DataOf(Country), false), (answer) => answer.data)

/**
 * `POST discovery/platforms` (data protocol §7.2). Repeatable. Next: `processPlatformsResponse`.
 *
 * @see digi.me data protocol §7.2
 * @since 0.2.0
 * @category constructors
 */
export const platformsRequest = (options: CatalogueOptions): Effect.Effect<Request, InvalidOptions> =>
  catalogueRequest("queryPlatforms", "discovery/platforms", options)

/**
 * Reads the answer to `platformsRequest`: `{data}`, the platforms.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processPlatformsResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<ReadonlyArray<Platform>, ApiError | ResponseError> =>
  Effect.map(Calls.decodeSuccess(request, response, DataOf(Platform), false), (answer) => answer.data)

/**
 * `POST discovery/categories` (data protocol §7.2). Repeatable. Next: `processCategoriesResponse`.
 *
 * @see digi.me data protocol §7.2
 * @since 0.2.0
 * @category constructors
 */
export const categoriesRequest = (options: CatalogueOptions): Effect.Effect<Request, InvalidOptions> =>
  catalogueRequest("queryCategories", "discovery/categories", options)

/**
 * Reads the answer to `categoriesRequest`: `{data}`, the categories.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processCategoriesResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<ReadonlyArray<Category>, ApiError | ResponseError> =>
  Effect.map(Calls.decodeSuccess(request, response, DataOf(Category), false), (answer) => answer.data)

// ---------------------------------------------------------------------------------------------
// Sample datasets, contract details
// ---------------------------------------------------------------------------------------------

/**
 * `GET permission-access/sample/datasets/{sourceId}`: the sample datasets a source offers (data
 * protocol §7.4). `sourceId` (a `Source`'s `id`) is checked and percent-encoded into the path.
 * Repeatable. Next: `processSampleDataSetsResponse`.
 *
 * @see digi.me data protocol §7.4
 * @since 0.2.0
 * @category constructors
 */
export const sampleDataSetsRequest = (
  options: ContractOptions & { readonly sourceId: number | string }
): Effect.Effect<Request, InvalidOptions> =>
  Effect.flatMap(
    pathSegment("getServiceSampleDataSets", "sourceId", options.sourceId),
    (segment) =>
      clientRequest(
        "getServiceSampleDataSets",
        options.contractId,
        HttpClientRequest.get(`permission-access/sample/datasets/${segment}`)
      )
  )

/**
 * Reads the answer to `sampleDataSetsRequest`: the datasets by id.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processSampleDataSetsResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<SampleDataSets, ApiError | ResponseError> =>
  Calls.decodeSuccess(request, response, SampleDataSets, false)

/**
 * `GET permission-access/contract`: the details digi.me keeps of the signing contract (data
 * protocol §7.5). Sent with a JSON content type and no body, as the SDK sends it. Repeatable.
 * Next: `processContractDetailsResponse`.
 *
 * @see digi.me data protocol §7.5
 * @since 0.2.0
 * @category constructors
 */
export const contractDetailsRequest = (options: ContractOptions): Effect.Effect<Request, InvalidOptions> =>
  clientRequest(
    "getContractDetails",
    options.contractId,
    HttpClientRequest.get("permission-access/contract").pipe(
      HttpClientRequest.setHeader("content-type", "application/json")
    )
  )

/**
 * Reads the answer to `contractDetailsRequest`: every field is required.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processContractDetailsResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<ContractDetails, ApiError | ResponseError> =>
  Calls.decodeSuccess(request, response, ContractDetails, false)
