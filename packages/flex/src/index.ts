/**
 * `@webattn/flex` — not built yet: this package has no public API so far (see the project issues).
 *
 * @packageDocumentation
 */
export {};
