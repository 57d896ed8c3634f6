/**
 * The test projects of the monorepo, one per package. `vitest.config.ts` passes this list to
 * `test.projects` (the form Vitest 3.2 prefers over a workspace file's default export).
 */
export const projects: Array<string> = ["packages/*"]
