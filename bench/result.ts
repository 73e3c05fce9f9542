/** One measured figure of a benchmark, with its target when the issue set one. */
export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  target?: number;
  /** Which direction meets the target. Default: lower. */
  better?: 'lower' | 'higher';
  note?: string;
}
