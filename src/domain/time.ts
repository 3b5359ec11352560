/** ISO 8601 with the portal's UTC offset, second precision: 2026-04-21T13:46:45+03:00. */
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

export function isValidTimeZone(timeZone: string): boolean {
  try {
    formatterFor(timeZone);
    return true;
  } catch {
    return false;
  }
}

const pad = (n: number, width = 2) => String(Math.abs(n)).padStart(width, '0');

function offsetSeconds(epochSeconds: number, timeZone: string): number {
  const parts = formatterFor(timeZone).formatToParts(new Date(epochSeconds * 1000));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second')) / 1000;
  return asUtc - epochSeconds;
}

/** Formatted times by time zone, then by epoch second (no key string to build per call). */
const cache = new Map<string, Map<number, string>>();
let cached = 0;

export function formatTime(epochSeconds: number, timeZone: string): string {
  let zone = cache.get(timeZone);
  const hit = zone?.get(epochSeconds);
  if (hit !== undefined) return hit;
  const offset = timeZone === 'UTC' ? 0 : offsetSeconds(epochSeconds, timeZone);
  const local = new Date((epochSeconds + offset) * 1000).toISOString().slice(0, 19);
  const sign = offset < 0 ? '-' : '+';
  const minutes = Math.abs(offset) / 60;
  const formatted = `${local}${sign}${pad(Math.trunc(minutes / 60))}:${pad(minutes % 60)}`;
  if (cached >= 10_000) {
    cache.clear();
    cached = 0;
    zone = undefined;
  }
  if (!zone) cache.set(timeZone, (zone = new Map()));
  zone.set(epochSeconds, formatted);
  cached++;
  return formatted;
}

const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:Z|[+-](\d{2}):?(\d{2}))?)?$/;

/**
 * Whether the parts of an ISO_TIME match name a real calendar date and clock time:
 * `Date.parse` rolls 2026-02-30 over to March 2 and T24:00 to the next day, so a filter
 * would silently mean another time. Offsets: hours 0..23, minutes 0..59.
 */
function isRealTime(match: RegExpExecArray): boolean {
  const [year, month, day, hour = 0, minute = 0, second = 0, offsetHour = 0, offsetMinute = 0] = match.slice(1).map((part) => (part === undefined ? undefined : Number(part)));
  if (month! < 1 || month! > 12 || day! < 1) return false;
  const leap = year! % 4 === 0 && (year! % 100 !== 0 || year! % 400 === 0);
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month!) ? 30 : 31;
  return day! <= daysInMonth && hour! <= 23 && minute! <= 59 && second! <= 59 && offsetHour! <= 23 && offsetMinute! <= 59;
}

/** Parses a time a client sends (filters); a time without an offset is taken in the portal's time zone. An impossible date or time is null. */
export function parseTime(value: string, timeZone: string): number | null {
  const match = ISO_TIME.exec(value);
  if (!match || !isRealTime(match)) return null;
  const hasOffset = /(Z|[+-]\d{2}:?\d{2})$/.test(value) && value.includes('T');
  if (hasOffset) {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
  }
  const asUtc = Date.parse(value.includes('T') ? `${value}Z` : `${value}T00:00:00Z`);
  if (Number.isNaN(asUtc)) return null;
  const guess = Math.floor(asUtc / 1000);
  return guess - offsetSeconds(guess - offsetSeconds(guess, timeZone), timeZone);
}
