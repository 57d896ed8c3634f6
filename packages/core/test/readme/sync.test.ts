/**
 * The README's code that claims to be a file of this repository is that file, line for line, and
 * each example of the digi.me calls is a region of test/readme/dataCalls.test.ts, as it is there.
 */
import { assert, describe, it } from "@effect/vitest"
import { readFileSync } from "node:fs"

const readme = readFileSync(new URL("../../../../README.md", import.meta.url), "utf8")

// The first ```ts block after the heading `## <heading>`.
const firstBlockAfter = (heading: string): string => {
  const at = readme.indexOf(`\n## ${heading}\n`)
  assert.isAtLeast(at, 0, `README has no section "${heading}"`)
  const start = readme.indexOf("```ts\n", at) + "```ts\n".length
  return readme.slice(start, readme.indexOf("\n```", start) + 1)
}

// The README from the heading `## <first>` to the heading that follows `## <last>`.
const sections = (first: string, last: string): string => {
  const start = readme.indexOf(`\n## ${first}\n`)
  const lastAt = readme.indexOf(`\n## ${last}\n`)
  assert.isAtLeast(start, 0, `README has no section "${first}"`)
  assert.isAtLeast(lastAt, start, `README has no section "${last}" after "${first}"`)
  const end = readme.indexOf("\n## ", lastAt + 1)
  return readme.slice(start, end < 0 ? readme.length : end)
}

// Every ```ts block of a text, without its fences.
const tsBlocks = (text: string): Array<string> =>
  [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => match[1]!)

// The regions of a file: the lines between `// #region <name>` and the next `// #endregion`.
const regions = (text: string): Map<string, string> => {
  const found = new Map<string, string>()
  for (const match of text.matchAll(/^\/\/ #region (\S+)\n([\s\S]*?)^\/\/ #endregion$/gm)) {
    assert.isFalse(found.has(match[1]!), `two regions are named ${match[1]}`)
    found.set(match[1]!, match[2]!)
  }
  return found
}

describe("README", () => {
  it("the testing section's example is test/readme/accounts.test.ts", () => {
    assert.strictEqual(
      firstBlockAfter("Testing your own code"),
      readFileSync(new URL("accounts.test.ts", import.meta.url), "utf8")
    )
  })

  describe("the examples of the digi.me calls", () => {
    const code = tsBlocks(sections("The digi.me calls", "Reading and pushing the user's data"))
    const examples = regions(readFileSync(new URL("dataCalls.test.ts", import.meta.url), "utf8"))

    it("each is a region of test/readme/dataCalls.test.ts, as it is there", () => {
      assert.isAbove(code.length, 0)
      const shown = new Set(examples.values())
      for (const block of code) {
        assert.isTrue(shown.has(block), `this README block is no region of dataCalls.test.ts:\n${block}`)
      }
    })

    it("every region of test/readme/dataCalls.test.ts is shown", () => {
      assert.isAbove(examples.size, 0)
      for (const [name, text] of examples) {
        assert.include(code, text, `the region ${name} of dataCalls.test.ts is not in the README`)
      }
    })

    it("every data call has an example", () => {
      const calls = [
        "client.readSession",
        "client.readFileList",
        "Files.read(",
        "client.readFileMetadata",
        "client.readFileBytes",
        "Files.readAll",
        "client.pushData",
        "client.pushToProvider",
        "client.readAccounts",
        "client.getOnboardServiceUrl",
        "client.getReauthorizeAccountUrl",
        "client.getRevokeAccountPermissionUrl",
        "client.deleteAccount",
        "client.deleteUser",
        "client.querySources",
        "client.queryCountries",
        "client.queryPlatforms",
        "client.queryCategories",
        "client.getServiceSampleDataSets",
        "client.getContractDetails",
        "client.getPortabilityReport",
        "Authorization.startAddingContract"
      ]
      const all = code.join("\n")
      for (const call of calls) assert.include(all, call, `no example of ${call}`)
    })
  })
})
