/**
 * The calls made without a user (claims B): account and storage references, discovery over a small
 * fixed catalogue (made up for the simulator), sample datasets and the contract's details.
 */
import * as Effect from "effect/Effect"
import { Assertion, CatalogueQuery, ReferenceBody, SourcesQuery } from "../../../internal/protocol.js"
import type { Endpoint, SimRequest, SimResponse } from "../../DigimeSimulator.js"
import { bodyDecoder, claimsDecoder, hasNoBody, noBody } from "./checks.js"
import { requireAccess } from "./dataCalls.js"
import type { RouteParams } from "./handlers.js"
import { type Json, jsonResponse, randomId, type Refusal, refuse } from "./responses.js"
import { codeLifetimeMillis, type State } from "./state.js"

/** @internal */
export type ClientEndpoint = Extract<Endpoint, "accountReference" | "discovery" | "sampleDatasets" | "contract">

interface Source {
  readonly id: number
  readonly name: string
  readonly reference: string
  readonly alias: ReadonlyArray<string>
  readonly publishedStatus: "approved" | "pending" | "deprecated" | "blocked" | "sampledataonly"
  readonly type: number
  readonly service: number
  readonly countries: ReadonlyArray<number>
  readonly categories: ReadonlyArray<number>
  readonly platforms: ReadonlyArray<number>
  readonly datasets: ReadonlyArray<string>
}

const sources: ReadonlyArray<Source> = [
  {
    id: 10,
    name: "Simulated Social",
    reference: "sim-social",
    alias: ["social"],
    publishedStatus: "approved",
    type: 1,
    service: 100,
    countries: [1, 3],
    categories: [1],
    platforms: [1],
    datasets: ["default", "test"]
  },
  {
    id: 11,
    name: "Simulated Photos",
    reference: "sim-photos",
    alias: ["photos"],
    publishedStatus: "approved",
    type: 1,
    service: 101,
    countries: [1],
    categories: [1],
    platforms: [2],
    datasets: ["default"]
  },
  {
    id: 20,
    name: "Simulated Health Record",
    reference: "sim-health",
    alias: ["health"],
    publishedStatus: "approved",
    type: 1,
    service: 200,
    countries: [2],
    categories: [2],
    platforms: [1],
    datasets: ["default"]
  },
  {
    id: 21,
    name: "Simulated Health Inbox",
    reference: "sim-health-inbox",
    alias: [],
    publishedStatus: "approved",
    type: 2,
    service: 201,
    countries: [2],
    categories: [2],
    platforms: [1],
    datasets: []
  },
  {
    id: 30,
    name: "Simulated Bank",
    reference: "sim-bank",
    alias: ["bank"],
    publishedStatus: "sampledataonly",
    type: 1,
    service: 300,
    countries: [1],
    categories: [3],
    platforms: [1],
    datasets: ["default"]
  },
  {
    id: 31,
    name: "Simulated Old Bank",
    reference: "sim-old-bank",
    alias: [],
    publishedStatus: "deprecated",
    type: 1,
    service: 301,
    countries: [3],
    categories: [3],
    platforms: [1],
    datasets: []
  }
]

const countries: ReadonlyArray<Json> = [
  { id: 1, code: "GB", name: "United Kingdom" },
  { id: 2, code: "NL", name: "Netherlands" },
  { id: 3, code: "US", name: "United States" }
]

const platforms: ReadonlyArray<Json> = [
  { id: 1, name: "Web", reference: "web" },
  { id: 2, name: "Mobile", reference: "mobile" }
]

const categories: ReadonlyArray<Json> = [
  { id: 1, name: "Social", reference: "social", title: "Social" },
  { id: 2, name: "Health", reference: "health", title: "Health" },
  { id: 3, name: "Finance", reference: "finance", title: "Finance" }
]

const sourceJson = (source: Source): Json => ({
  id: source.id,
  name: source.name,
  reference: source.reference,
  alias: source.alias,
  publishedStatus: source.publishedStatus,
  type: { id: source.type, name: source.type === 1 ? "pull" : "push" },
  service: { id: source.service, name: source.name, reference: source.reference },
  country: source.countries.map((id) => ({ id })),
  category: source.categories.map((id) => ({ id })),
  platform: source.platforms.map((id) => ({ id })),
  resource: { url: `https://simulated.invalid/logos/${source.reference}.png`, mimetype: "image/png" },
  json: { authorisation: { type: "saas" } }
})

const defaultLimit = 10

const matches = (wanted: ReadonlyArray<number> | undefined, values: ReadonlyArray<number>): boolean =>
  wanted === undefined || values.some((value) => wanted.includes(value))

const querySources = (body: typeof SourcesQuery.Type): Json => {
  const filter = body.query?.filter
  const name = body.query?.search?.name?.toLowerCase()
  const found = sources.filter((source) =>
    matches(filter?.id, [source.id]) &&
    (filter?.sourceId === undefined || filter.sourceId === source.id) &&
    (filter?.publishedStatus === undefined || filter.publishedStatus.includes(source.publishedStatus)) &&
    matches(filter?.type?.id, [source.type]) &&
    matches(filter?.service?.id, [source.service]) &&
    matches(filter?.country?.id, source.countries) &&
    matches(filter?.category?.id, source.categories) &&
    matches(filter?.platform?.id, source.platforms) &&
    (filter?.reference === undefined || filter.reference.includes(source.reference)) &&
    (filter?.alias === undefined || source.alias.some((alias) => filter.alias!.includes(alias))) &&
    (name === undefined || source.name.toLowerCase().includes(name))
  )
  const sorted = body.sort === undefined
    ? found
    : [...found].sort((a, b) => a.name.localeCompare(b.name) * (body.sort!.name === "asc" ? 1 : -1))
  const limit = body.limit ?? defaultLimit
  const offset = body.offset ?? 0
  return { data: sorted.slice(offset, offset + limit).map(sourceJson), limit, offset, total: sorted.length }
}

const queryList = (list: ReadonlyArray<Json>, body: typeof CatalogueQuery.Type | undefined): Json => {
  const ids = body?.query?.filter?.id
  return { data: ids === undefined ? list : list.filter((item) => ids.includes(item.id as number)) }
}

const decodeClientClaims = claimsDecoder(Assertion.client)
const decodeReferenceBody = bodyDecoder(ReferenceBody)
const decodeSourcesBody = bodyDecoder(SourcesQuery)
const decodeCatalogueBody = bodyDecoder(CatalogueQuery)

const yearMillis = 365 * 24 * 3600 * 1000

/**
 * Processes a claims-B call whose assertion is verified.
 *
 * @internal
 */
export const clientCall = (
  state: State,
  endpoint: ClientEndpoint,
  request: SimRequest,
  params: RouteParams,
  claims: Json,
  clientId: string,
  now: number
): Effect.Effect<SimResponse, Refusal> =>
  Effect.gen(function*() {
    yield* decodeClientClaims(claims)
    switch (endpoint) {
      case "accountReference": {
        const body = yield* decodeReferenceBody(request)
        if (
          body.type === "accountId" &&
          ![...state.users.values()].some((user) => user.accounts.some((account) => account.id === body.value))
        ) {
          return yield* Effect.fail(
            refuse(
              404,
              "AccountNotFound",
              `The account (${body.value}) was not found`,
              "accountReference: unknown account"
            )
          )
        }
        const id = randomId()
        state.references.set(id, { type: body.type, value: body.value, clientId, expiresAt: now + codeLifetimeMillis })
        return jsonResponse(201, { id })
      }
      case "discovery": {
        const list = params.segments[0]
        if (list === "sources") {
          const body = yield* decodeSourcesBody(request)
          yield* requireAccess(state, clientId, "r", endpoint)
          return jsonResponse(200, querySources(body))
        }
        const body = hasNoBody(request) ? undefined : yield* decodeCatalogueBody(request)
        return jsonResponse(
          200,
          queryList(list === "countries" ? countries : list === "platforms" ? platforms : categories, body)
        )
      }
      case "sampleDatasets": {
        yield* noBody(request)
        const sourceId = params.segments[0]!
        const source = /^\d{1,9}$/.test(sourceId)
          ? sources.find((candidate) => candidate.id === Number(sourceId))
          : undefined
        if (source === undefined) {
          return yield* Effect.fail(
            refuse(404, "SourceNotFound", `The source (${sourceId}) was not found`, "sampleDatasets: unknown source")
          )
        }
        const datasets: Json = {}
        for (const name of source.datasets) {
          datasets[name] = { name, description: name === "default" ? "" : `Sample data set ${name}` }
        }
        return jsonResponse(200, datasets)
      }
      case "contract": {
        yield* noBody(request)
        const contract = state.contracts.get(clientId)!
        return jsonResponse(200, {
          accessType: contract.accessType,
          application: { id: state.config.applicationId, name: state.config.applicationId, resources: {}, status: 1 },
          certificate: "simulated",
          certificateContractSchemaVersion: "1.0.0",
          expirationDate: contract.registeredAt + yearMillis,
          id: contract.contractId,
          partnerId: "simulated-partner",
          type: contract.accessType === "r" ? "pull" : "push"
        })
      }
    }
  })
