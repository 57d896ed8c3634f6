/**
 * The README's code that claims to be a file of this repository is that file, line for line.
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

describe("README", () => {
  it("the testing section's example is test/readme/accounts.test.ts", () => {
    assert.strictEqual(
      firstBlockAfter("Testing your own code"),
      readFileSync(new URL("accounts.test.ts", import.meta.url), "utf8")
    )
  })
})
