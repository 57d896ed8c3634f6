/**
 * Starts a throwaway PostgreSQL for the tests of this package (see `fixtures/postgres.ts`) and
 * provides its URL as `pgUrl`. Reuses `DATABASE_URL` when it is set. Teardown stops the server
 * and removes its directory.
 */
import type { TestProject } from "vitest/node"
import { startPostgres } from "./fixtures/postgres.js"

declare module "vitest" {
  export interface ProvidedContext {
    pgUrl: string
  }
}

export default async function setup(project: TestProject): Promise<(() => void) | undefined> {
  const existing = process.env.DATABASE_URL
  if (existing !== undefined && existing !== "") {
    project.provide("pgUrl", existing)
    return undefined
  }
  const postgres = await startPostgres()
  project.provide("pgUrl", postgres.url)
  return postgres.dispose
}
