/**
 * Schemas of the simulator's own: file metadata (re-exported by the public module) and the parts
 * of request bodies that the shared wire schemas leave open but digi.me's SDK checks.
 */
import * as Schema from "effect/Schema"

/** @internal */
export const MappedFileMetadata = Schema.Struct({
  objectCount: Schema.Int.pipe(Schema.nonNegative()),
  objectType: Schema.String,
  serviceGroup: Schema.String,
  serviceName: Schema.String,
  schema: Schema.Struct({
    standard: Schema.Literal("digime", "fhir", "me.digi"),
    version: Schema.String,
    id: Schema.optional(Schema.String)
  }),
  objectVersion: Schema.optional(Schema.String)
})

/** @internal */
export const RawFileMetadata = Schema.Struct({
  mimetype: Schema.String,
  accounts: Schema.Array(Schema.Struct({ accountid: Schema.String })),
  appid: Schema.optional(Schema.String),
  contractid: Schema.optional(Schema.String),
  partnerid: Schema.optional(Schema.String),
  created: Schema.optional(Schema.Number),
  objecttypes: Schema.optional(
    Schema.Array(Schema.Struct({ name: Schema.String, references: Schema.optional(Schema.Array(Schema.String)) }))
  ),
  reference: Schema.optional(Schema.Array(Schema.String)),
  tags: Schema.optional(Schema.Array(Schema.String)),
  servicegroups: Schema.optional(Schema.Array(Schema.Number))
})

/** @internal */
export const FileMetadata = Schema.Union(MappedFileMetadata, RawFileMetadata)

/**
 * `sourceFetchFilter` of a trigger body or of `actions.pull` (data protocol §2): the SDK checks this
 * shape; the shared `PullOptions` leaves it `unknown`.
 *
 * @internal
 */
export const SourceFetchFilter = Schema.Struct({
  account: Schema.Struct({ id: Schema.Array(Schema.String) })
})
