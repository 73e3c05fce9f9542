import { inspect } from 'node:util';

/** Printed in place of any secret value: in logs, plans, errors and JSON. */
export const MASK = '********';

/**
 * A secret value (token, password, key). It refuses to print itself: String(),
 * template literals, JSON.stringify and util.inspect all show MASK. The value
 * is reached only through `reveal()`, which makes every use easy to find.
 */
/** Marks a Secret across copies of k8s-ha in one process (a test driving the installed package with its own hosts). */
const SECRET_BRAND = Symbol.for('k8s-ha.Secret');

export class Secret {
  readonly #value: string;
  readonly [SECRET_BRAND] = true;
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
  return typeof v === 'object' && v !== null && SECRET_BRAND in v;
}

/** Replace every occurrence of the given secrets' values in a text by MASK. */
export function maskSecrets(text: string, secrets: Iterable<Secret>): string {
  return new SecretSet(secrets).mask(text);
}

/**
 * Values shorter than this are not masked: a 3-character "secret" would
 * blank out ordinary words of the output, and is no secret anyway.
 */
const MIN_MASKED = 4;

/**
 * Every secret in play during one run: the cluster file's, the state file's
 * (also those no longer used), and those read from hosts (the token a server
 * runs with, the password in a config file about to be replaced). Output
 * goes through `mask()` once, where it is printed (cli/main.ts), so the old
 * side of a diff is masked as surely as the new one.
 */
export class SecretSet implements Iterable<Secret> {
  readonly #values = new Map<string, Secret>();
  // Longest first, so a value that contains another is masked whole.
  #sorted: string[] | null = null;

  constructor(initial: Iterable<Secret | string | undefined | null> = []) {
    this.add(...initial);
  }

  add(...values: (Secret | string | undefined | null)[]): void {
    for (const v of values) {
      if (v === undefined || v === null) continue;
      const text = typeof v === 'string' ? v : v.reveal();
      if (text.length < MIN_MASKED || this.#values.has(text)) continue;
      this.#values.set(text, typeof v === 'string' ? new Secret(v) : v);
      this.#sorted = null;
    }
  }

  get size(): number {
    return this.#values.size;
  }

  [Symbol.iterator](): Iterator<Secret> {
    return this.#values.values();
  }

  /** The text with every secret's value, as written and as escaped in JSON or YAML, replaced by MASK. */
  mask(text: string): string {
    if (this.#values.size === 0 || text.length < MIN_MASKED) return text;
    this.#sorted ??= [...this.#values.keys()].flatMap(forms).sort((a, b) => b.length - a.length);
    let out = text;
    for (const v of this.#sorted) if (out.includes(v)) out = out.split(v).join(MASK);
    return out;
  }
}

/** A value as it appears in plain text, inside a JSON (or YAML double-quoted) string, and YAML single-quoted. */
function forms(v: string): string[] {
  return [...new Set([v, JSON.stringify(v).slice(1, -1), v.replace(/'/g, "''")])];
}
