// Durations and sizes as an administrator writes them in the organisation file.
import { z } from 'zod';

const DURATION_RE = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/;
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** "10m", "12h", "2d", "30s", or a bare number of seconds → seconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return value >= 0 ? value : undefined;
  const m = DURATION_RE.exec(value.trim());
  if (!m) return undefined;
  return Number(m[1]) * UNIT_SECONDS[m[2] ?? 's']!;
}

/** A duration field: accepts "10m" style strings or seconds, yields seconds. */
export const duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const seconds = parseDuration(v);
  if (seconds === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `not a duration: ${JSON.stringify(v)} (use e.g. 30s, 10m, 12h, 2d or a number of seconds)`,
    });
    return z.NEVER;
  }
  return seconds;
});

/** A size in KB as Exchange expresses limits; null means "no limit". */
export const sizeKb = z.number().int().positive().nullable();
