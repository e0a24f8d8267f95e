// Connector schedules [003:4307-5006]: always, never, or weekly windows (local time of the
// server). Pure: whether a connector may send now, and when it next may.
export interface Window {
  days: string[];
  start: string;
  end: string;
}

export interface Schedule {
  mode: 'always' | 'never' | 'windows';
  windows: Window[];
}

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

function minutes(hhmm: string): number {
  const [h, m] = hhmm.split(':').map(Number) as [number, number];
  return h * 60 + m;
}

function inWindow(w: Window, d: Date): boolean {
  const day = DAYS[d.getDay()]!;
  const now = d.getHours() * 60 + d.getMinutes();
  const start = minutes(w.start);
  const end = minutes(w.end);
  if (start <= end) return w.days.includes(day) && now >= start && now < end;
  // A window past midnight belongs to the day it starts on.
  const yesterday = DAYS[(d.getDay() + 6) % 7]!;
  return (w.days.includes(day) && now >= start) || (w.days.includes(yesterday) && now < end);
}

export function scheduleOpen(s: Schedule, at: Date): boolean {
  if (s.mode === 'always') return true;
  if (s.mode === 'never') return false;
  return s.windows.some((w) => inWindow(w, at));
}

/** The next time (ms) the schedule opens at or after `from`; undefined for "never". */
export function nextOpening(s: Schedule, from: Date): number | undefined {
  if (s.mode === 'always') return from.getTime();
  if (s.mode === 'never' || !s.windows.length) return undefined;
  // Minute steps over a week are cheap (10,080 checks at most) and obviously right.
  const t = new Date(from.getTime());
  t.setSeconds(0, 0);
  for (let i = 0; i <= 7 * 24 * 60; i++) {
    if (scheduleOpen(s, t)) return Math.max(t.getTime(), from.getTime());
    t.setTime(t.getTime() + 60_000);
  }
  return undefined;
}
