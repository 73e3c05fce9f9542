/**
 * TypeBox's errors turned into one readable diagnostic per problem. TypeBox
 * reports a union failure as one error carrying each variant's failures; we
 * say what the union accepts instead of listing why each variant failed.
 */
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { error, formatPath, pointerToSegments, type Diagnostic } from './diagnostics.js';
import { suggestFlag } from './k3s-flags.js';
import { schemaMessage } from './schema.js';

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || value === undefined) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

function kindOf(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the text ${JSON.stringify(value)}`;
  return `${typeof value === 'number' ? 'the number' : 'the value'} ${String(value)}`;
}

function describeOf(schema: TSchema): string {
  return typeof schema.description === 'string' ? ` (${schema.description.replace(/\.$/, '')})` : '';
}

/** The allowed literals of a union of literals, or undefined for other unions. */
function unionLiterals(schema: TSchema): string[] | undefined {
  const variants = (schema as { anyOf?: TSchema[] }).anyOf;
  if (!variants || !variants.every((v) => 'const' in v)) return undefined;
  return variants.map((v) => String((v as unknown as { const: unknown }).const));
}

function describe(e: ValueError, path: string, last: string | number | undefined): Diagnostic {
  const own = schemaMessage(e.schema);
  const v = e.value;
  const withHint = (message: string, hint: string) => error(path, message, own.hint ?? hint);
  if (own.message && e.type !== ValueErrorType.ObjectRequiredProperty && e.type !== ValueErrorType.ObjectAdditionalProperties) {
    return withHint(`${show(v)} ${own.message}`, 'see docs/cluster-file.md for this field');
  }
  switch (e.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return error(path, `${String(last)} is required`, `add ${String(last)}${describeOf(e.schema)}`);
    case ValueErrorType.ObjectAdditionalProperties: {
      const known = Object.keys((e.schema as { properties?: object }).properties ?? {});
      const s = suggestFlag(String(last), known);
      return error(
        path,
        `unknown field "${String(last)}"${s ? ` (did you mean "${s}"?)` : ''}`,
        s ? `rename it to ${s}` : `remove it; the fields here are ${known.join(', ')}`,
      );
    }
    case ValueErrorType.Union: {
      const allowed = unionLiterals(e.schema);
      if (allowed) {
        const s = typeof v === 'string' ? suggestFlag(v, allowed) : undefined;
        return withHint(`${show(v)} is not one of ${allowed.join(', ')}${s ? ` (did you mean "${s}"?)` : ''}`, s ? `write ${s}` : `use one of ${allowed.join(', ')}`);
      }
      return withHint(`${show(v)} is not an accepted value${describeOf(e.schema)}`, 'see docs/cluster-file.md for this field');
    }
    case ValueErrorType.Literal: {
      const want = String((e.schema as unknown as { const: unknown }).const);
      return withHint(`${show(v)} is not "${want}"`, `write ${String(last)}: ${want}`);
    }
    case ValueErrorType.Object:
      return v === null
        ? withHint(`${String(last ?? 'the file')} is empty`, 'fill it in or remove the key')
        : withHint(`expected a mapping (key: value), got ${kindOf(v)}`, 'indent the fields under this key');
    case ValueErrorType.Array:
      return withHint(`expected a list, got ${kindOf(v)}`, 'write a list: [a, b] or one "- item" per line');
    case ValueErrorType.ArrayMinItems:
      return withHint(`needs at least ${String((e.schema as { minItems?: number }).minItems)} entr${(e.schema as { minItems?: number }).minItems === 1 ? 'y' : 'ies'}`, 'add the missing entries');
    case ValueErrorType.ArrayUniqueItems:
      return withHint('has the same entry more than once', 'list each entry once');
    case ValueErrorType.String:
      return withHint(`expected text, got ${kindOf(v)}`, 'quote the value');
    case ValueErrorType.StringMinLength:
      return withHint('is empty', 'give a value or remove the key');
    case ValueErrorType.StringPattern:
      return withHint(`${show(v)} does not match ${String((e.schema as { pattern?: string }).pattern)}`, 'see docs/cluster-file.md for this field');
    case ValueErrorType.Integer:
      return withHint(`expected a whole number, got ${kindOf(v)}`, 'write a number without quotes or decimals');
    case ValueErrorType.Number:
      return withHint(`expected a number, got ${kindOf(v)}`, 'write a number without quotes');
    case ValueErrorType.Boolean:
      return withHint(`expected true or false, got ${kindOf(v)}`, 'write true or false without quotes');
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return withHint(`${show(v)} is below the minimum ${String((e.schema as { minimum?: number }).minimum)}`, `use a value from ${String((e.schema as { minimum?: number }).minimum)}${(e.schema as { maximum?: number }).maximum !== undefined ? ` to ${String((e.schema as { maximum?: number }).maximum)}` : ''}`);
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return withHint(`${show(v)} is above the maximum ${String((e.schema as { maximum?: number }).maximum)}`, `use a value up to ${String((e.schema as { maximum?: number }).maximum)}`);
    default:
      return withHint(`${show(v)}: ${e.message.toLowerCase()}`, 'see docs/cluster-file.md for this field');
  }
}

/**
 * Validate `value` against `schema`: one diagnostic per path, and none below
 * a path already reported (a broken mapping is one problem, not ten).
 */
export function schemaDiagnostics(schema: TSchema, value: unknown): Diagnostic[] {
  const out: Diagnostic[] = [];
  const reported: string[] = [];
  for (const e of Value.Errors(schema, value)) {
    const segments = pointerToSegments(e.path);
    const path = formatPath(segments);
    if (reported.some((p) => p === path || path.startsWith(`${p}.`) || path.startsWith(`${p}[`))) continue;
    reported.push(path);
    out.push(describe(e, path, segments[segments.length - 1]));
  }
  return out;
}
