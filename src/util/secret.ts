import { inspect } from 'node:util';

/** Printed in place of any secret value: in logs, plans, errors and JSON. */
export const MASK = '********';

/**
 * A secret value (token, password, key). It refuses to print itself: String(),
 * template literals, JSON.stringify and util.inspect all show MASK. The value
 * is reached only through `reveal()`, which makes every use easy to find.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return MASK;
  }
  toJSON(): string {
    return MASK;
  }
  [inspect.custom](): string {
    return `Secret(${MASK})`;
  }
  equals(other: Secret): boolean {
    return other.#value === this.#value;
  }
}

export function isSecret(v: unknown): v is Secret {
  return v instanceof Secret;
}

/** Replace every occurrence of the given secrets' values in a text by MASK. */
export function maskSecrets(text: string, secrets: Iterable<Secret>): string {
  let out = text;
  for (const s of secrets) {
    const v = s.reveal();
    if (v.length >= 4) out = out.split(v).join(MASK);
  }
  return out;
}
