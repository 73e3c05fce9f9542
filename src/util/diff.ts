import { createTwoFilesPatch } from 'diff';

/**
 * A unified diff of a file's old and new content, for plans. `null` before
 * means the file does not exist yet. Returns '' when nothing differs.
 */
export function unifiedDiff(path: string, before: string | null, after: string | null): string {
  if (before === after) return '';
  const patch = createTwoFilesPatch(
    before === null ? '/dev/null' : `a${path}`,
    after === null ? '/dev/null' : `b${path}`,
    before ?? '',
    after ?? '',
    '',
    '',
    { context: 3 },
  );
  // Drop jsdiff's "Index:"/"=====" preamble: keep the ---/+++ lines and hunks.
  return patch
    .split('\n')
    .filter((l, i) => !(i < 2 && (l.startsWith('Index:') || l.startsWith('==='))))
    .join('\n')
    .trimEnd();
}
