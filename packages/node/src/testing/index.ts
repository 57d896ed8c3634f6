/**
 * The simulated digi.me served over real HTTP on Node: the API, the key set, consent pages and
 * control endpoints, for whole user journeys and for pointing an application at it.
 *
 * @since 0.1.0
 */
export * as NodeDigimeSimulator from "./NodeDigimeSimulator.js"

/**
 * The whole library on Node, over real HTTP, on a simulated digi.me: one layer for tests.
 *
 * @since 0.1.0
 */
export * as NodeDigimeTest from "./NodeDigimeTest.js"
