import { Contract, DigimeConfig } from "@digime-effect/core"
import { assert, describe, it } from "@effect/vitest"
import { ConfigError, ConfigProvider, Duration, Effect, Layer, Redacted } from "effect"

const contract = Contract.make({ contractId: "contract-1", privateKey: Redacted.make("-----BEGIN PRIVATE KEY-----") })

const failure = (options: DigimeConfig.Options) => Effect.flip(DigimeConfig.make(options))

describe("DigimeConfig", () => {
  it.effect("applies the documented defaults", () =>
    Effect.gen(function*() {
      const config = yield* DigimeConfig.make({ applicationId: "app", contracts: [contract] })
      assert.strictEqual(config.baseUrl, "https://api.digi.me/v1.7/")
      assert.strictEqual(config.onboardUrl, "https://api.digi.me/apps/saas/")
      assert.isTrue(Duration.equals(config.refreshLeadTime, Duration.seconds(60)))
      assert.isTrue(Duration.equals(config.requestTimeout, Duration.seconds(30)))
      assert.deepStrictEqual([...config.jwksOrigins], ["https://api.digi.me"])
      assert.strictEqual((yield* config.contract("contract-1")).contractId, "contract-1")
    }))

  it.effect("the refresh lease is derived from the request timeout unless given; it must be positive", () =>
    Effect.gen(function*() {
      const base = { applicationId: "app", contracts: [contract] }
      const derived = yield* DigimeConfig.make({ ...base, requestTimeout: "10 seconds" })
      assert.isTrue(Duration.equals(derived.refreshLeaseTime, Duration.seconds(70)))
      const byDefault = yield* DigimeConfig.make(base)
      assert.isTrue(Duration.equals(byDefault.refreshLeaseTime, Duration.seconds(150)))
      const given = yield* DigimeConfig.make({ ...base, refreshLeaseTime: "5 seconds" })
      assert.isTrue(Duration.equals(given.refreshLeaseTime, Duration.seconds(5)))
      assert.strictEqual((yield* failure({ ...base, refreshLeaseTime: 0 })).field, "refreshLeaseTime")
      assert.strictEqual((yield* failure({ ...base, refreshLeaseTime: "-1 seconds" })).field, "refreshLeaseTime")
    }))

  it.effect("warmUp is on by default, waited for 1 second at most; both options are validated", () =>
    Effect.gen(function*() {
      const base = { applicationId: "app", contracts: [contract] }
      const byDefault = yield* DigimeConfig.make(base)
      assert.isTrue(byDefault.warmUp)
      assert.isTrue(Duration.equals(byDefault.warmUpTimeout, Duration.seconds(1)))
      const given = yield* DigimeConfig.make({ ...base, warmUp: false, warmUpTimeout: 0 })
      assert.isFalse(given.warmUp)
      assert.isTrue(Duration.equals(given.warmUpTimeout, Duration.zero))
      assert.strictEqual((yield* failure({ ...base, warmUp: "no" as unknown as boolean })).field, "warmUp")
      assert.strictEqual((yield* failure({ ...base, warmUpTimeout: -1 })).field, "warmUpTimeout")
      assert.strictEqual((yield* failure({ ...base, warmUpTimeout: "-1 seconds" })).field, "warmUpTimeout")
      assert.strictEqual((yield* failure({ ...base, warmUpTimeout: Duration.infinity })).field, "warmUpTimeout")
    }))

  it.effect("fromEnv reads DIGIME_WARM_UP and DIGIME_WARM_UP_TIMEOUT", () =>
    Effect.gen(function*() {
      const read = (entries: ReadonlyArray<readonly [string, string]>) =>
        DigimeConfig.DigimeConfig.pipe(
          Effect.provide(
            DigimeConfig.layerConfig(DigimeConfig.fromEnv).pipe(
              Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(
                new Map([
                  ["DIGIME_APPLICATION_ID", "app"],
                  ["DIGIME_CONTRACT_ID", "c"],
                  ["DIGIME_PRIVATE_KEY", "k"],
                  ...entries
                ])
              )))
            )
          )
        )
      const config = yield* read([["DIGIME_WARM_UP", "false"], ["DIGIME_WARM_UP_TIMEOUT", "250 millis"]])
      assert.isFalse(config.warmUp)
      assert.isTrue(Duration.equals(config.warmUpTimeout, Duration.millis(250)))
      assert.isTrue((yield* read([])).warmUp)
      const error = yield* Effect.flip(read([["DIGIME_WARM_UP", "maybe"]]))
      assert.isTrue(ConfigError.isConfigError(error))
    }))

  it.effect("adds the trailing slash to both URLs", () =>
    Effect.gen(function*() {
      const config = yield* DigimeConfig.make({
        applicationId: "app",
        contracts: [contract],
        baseUrl: "http://127.0.0.1:8080/v1.7",
        onboardUrl: "http://127.0.0.1:8080/onboard"
      })
      assert.strictEqual(config.baseUrl, "http://127.0.0.1:8080/v1.7/")
      assert.strictEqual(config.onboardUrl, "http://127.0.0.1:8080/onboard/")
      assert.deepStrictEqual([...config.jwksOrigins], ["http://127.0.0.1:8080"])
    }))

  it.effect("rejects an empty application id", () =>
    Effect.gen(function*() {
      const error = yield* failure({ applicationId: "  ", contracts: [contract] })
      assert.strictEqual(error._tag, "InvalidConfig")
      assert.strictEqual(error.field, "applicationId")
    }))

  it.effect("rejects malformed URLs and durations", () =>
    Effect.gen(function*() {
      const base = { applicationId: "app", contracts: [contract] }
      assert.strictEqual((yield* failure({ ...base, baseUrl: "not a url" })).field, "baseUrl")
      assert.strictEqual((yield* failure({ ...base, onboardUrl: "ftp://x.example/" })).field, "onboardUrl")
      assert.strictEqual((yield* failure({ ...base, baseUrl: "https://x.example/?a=b" })).field, "baseUrl")
      assert.strictEqual((yield* failure({ ...base, jwksOrigins: ["nope"] })).field, "jwksOrigins")
      assert.strictEqual((yield* failure({ ...base, requestTimeout: 0 })).field, "requestTimeout")
      assert.strictEqual((yield* failure({ ...base, refreshLeadTime: -5 })).field, "refreshLeadTime")
    }))

  it.effect("rejects missing, duplicate and empty contracts", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* failure({ applicationId: "app", contracts: [] })).field, "contracts")
      assert.strictEqual((yield* failure({ applicationId: "app", contracts: [contract, contract] })).field, "contracts")
      const empty = Contract.make({ contractId: "", privateKey: Redacted.make("x") })
      assert.strictEqual((yield* failure({ applicationId: "app", contracts: [empty] })).field, "contracts")
      const noKey = Contract.make({ contractId: "c", privateKey: Redacted.make(" ") })
      const error = yield* failure({ applicationId: "app", contracts: [noKey] })
      assert.include(error.message, "empty private key")
    }))

  it.effect("fails with UnknownContract for an id it was not given", () =>
    Effect.gen(function*() {
      const config = yield* DigimeConfig.make({ applicationId: "app", contracts: [contract] })
      const error = yield* Effect.flip(config.contract("other"))
      assert.strictEqual(error._tag, "UnknownContract")
      assert.strictEqual(error.contractId, "other")
    }))

  it.effect("layerConfig reads the environment through Config, keeping the key redacted", () =>
    Effect.gen(function*() {
      const provider = ConfigProvider.fromMap(
        new Map([
          ["DIGIME_APPLICATION_ID", "app-env"],
          ["DIGIME_CONTRACT_ID", "contract-env"],
          ["DIGIME_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----secret"],
          ["DIGIME_BASE_URL", "https://sandbox.example/v1.7"],
          ["DIGIME_REFRESH_LEAD_TIME", "2 minutes"]
        ])
      )
      const config = yield* DigimeConfig.DigimeConfig.pipe(
        Effect.provide(
          DigimeConfig.layerConfig(DigimeConfig.fromEnv).pipe(
            Layer.provide(Layer.setConfigProvider(provider))
          )
        )
      )
      assert.strictEqual(config.applicationId, "app-env")
      assert.strictEqual(config.baseUrl, "https://sandbox.example/v1.7/")
      assert.isTrue(Duration.equals(config.refreshLeadTime, Duration.minutes(2)))
      const stored = yield* config.contract("contract-env")
      assert.isTrue(Redacted.isRedacted(stored.privateKey))
      assert.notInclude(String(stored.privateKey), "secret")
    }))

  it.effect("layerConfig fails with InvalidConfig when the values are unusable", () =>
    Effect.gen(function*() {
      const provider = ConfigProvider.fromMap(
        new Map([
          ["DIGIME_APPLICATION_ID", "app"],
          ["DIGIME_CONTRACT_ID", "c"],
          ["DIGIME_PRIVATE_KEY", "k"],
          ["DIGIME_BASE_URL", "::"]
        ])
      )
      const error = yield* DigimeConfig.DigimeConfig.pipe(
        Effect.provide(
          DigimeConfig.layerConfig(DigimeConfig.fromEnv).pipe(
            Layer.provide(Layer.setConfigProvider(provider))
          )
        ),
        Effect.flip
      )
      assert.strictEqual(error._tag, "InvalidConfig")
    }))
  describe("contractsFromEnv", () => {
    // As `ConfigProvider.fromEnv` reads the environment: path segments joined by "_".
    const read = (entries: ReadonlyArray<readonly [string, string]>) =>
      Effect.withConfigProvider(
        DigimeConfig.contractsFromEnv,
        ConfigProvider.fromMap(new Map(entries), { pathDelim: "_" })
      )

    it.effect("the single pair and labelled contracts (a read and a write one), keys redacted", () =>
      Effect.gen(function*() {
        const contracts = yield* read([
          ["DIGIME_CONTRACT_ID", "main"],
          ["DIGIME_PRIVATE_KEY", "pem-main"],
          ["DIGIME_CONTRACTS_WRITE_ID", "write-contract"],
          ["DIGIME_CONTRACTS_WRITE_PRIVATE_KEY", "pem-write"],
          ["DIGIME_CONTRACTS_READ_ID", "read-contract"],
          ["DIGIME_CONTRACTS_READ_PRIVATE_KEY", "pem-read"]
        ])
        assert.deepStrictEqual(contracts.map((contract) => contract.contractId), [
          "main",
          "read-contract",
          "write-contract"
        ])
        assert.deepStrictEqual(contracts.map((contract) => Redacted.value(contract.privateKey)), [
          "pem-main",
          "pem-read",
          "pem-write"
        ])
        for (const contract of contracts) assert.notInclude(String(contract.privateKey), "pem")
      }))

    it.effect("labelled contracts alone are enough", () =>
      Effect.gen(function*() {
        const contracts = yield* read([["DIGIME_CONTRACTS_READ_ID", "r"], ["DIGIME_CONTRACTS_READ_PRIVATE_KEY", "k"]])
        assert.deepStrictEqual(contracts.map((contract) => contract.contractId), ["r"])
      }))

    it.effect("a half pair, a label without its key, or no contract at all: a ConfigError naming what is missing", () =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<[ReadonlyArray<readonly [string, string]>, string]> = [
          [[["DIGIME_CONTRACT_ID", "c"]], "DIGIME_PRIVATE_KEY"],
          [[["DIGIME_PRIVATE_KEY", "k"]], "DIGIME_CONTRACT_ID"],
          [[["DIGIME_CONTRACTS_READ_ID", "r"]], "PRIVATE_KEY"],
          [[], "No contract"]
        ]
        for (const [entries, expected] of cases) {
          const error = yield* Effect.flip(read(entries))
          assert.isTrue(ConfigError.isConfigError(error))
          assert.include(String(error), expected)
        }
      }))
  })
})
