import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatTime, isValidTimeZone, parseTime } from '../../src/domain/time.js';

const at = (iso: string) => Date.parse(iso) / 1000;

describe('times in the portal time zone', () => {
  it('formats with the zone offset and second precision', () => {
    assert.equal(formatTime(at('2026-04-21T10:46:45Z'), 'UTC'), '2026-04-21T10:46:45+00:00');
    assert.equal(formatTime(at('2026-04-21T10:46:45Z'), 'Europe/Moscow'), '2026-04-21T13:46:45+03:00');
    assert.equal(formatTime(at('2026-01-15T12:00:00Z'), 'America/New_York'), '2026-01-15T07:00:00-05:00');
    assert.equal(formatTime(at('2026-07-15T12:00:00Z'), 'America/New_York'), '2026-07-15T08:00:00-04:00', 'daylight saving time');
    assert.equal(formatTime(at('2026-07-15T12:00:00Z'), 'Asia/Kolkata'), '2026-07-15T17:30:00+05:30');
  });

  it('parses ISO 8601 with an offset, or in the portal zone without one', () => {
    assert.equal(parseTime('2026-04-21T13:46:45+03:00', 'UTC'), at('2026-04-21T10:46:45Z'));
    assert.equal(parseTime('2026-04-21T13:46:45', 'Europe/Moscow'), at('2026-04-21T10:46:45Z'));
    assert.equal(parseTime('2026-04-21', 'UTC'), at('2026-04-21T00:00:00Z'));
    assert.equal(parseTime('yesterday', 'UTC'), null);
    assert.equal(parseTime('2026-13-45T99:00:00Z', 'UTC'), null);
  });

  it('refuses impossible calendar dates and clock times instead of rolling them over', () => {
    for (const value of ['2026-02-29', '2026-02-30', '2026-04-31T00:00:00Z', '2100-02-29', '2026-00-01', '2026-01-00', '2026-01-01T24:00:00', '2026-01-01T23:60:00', '2026-01-01T23:59:60Z', '2026-01-01T10:00:00+24:00', '2026-01-01T10:00:00+03:60']) {
      assert.equal(parseTime(value, 'UTC'), null, value);
    }
    assert.equal(parseTime('2028-02-29', 'UTC'), at('2028-02-29T00:00:00Z'), 'a leap day');
    assert.equal(parseTime('2000-02-29T23:59:59+14:00', 'UTC'), at('2000-02-29T09:59:59Z'), 'a leap day of a year divisible by 400');
    assert.equal(parseTime('2026-12-31T23:59:59.999Z', 'UTC'), at('2026-12-31T23:59:59Z'));
  });

  it('knows IANA zones', () => {
    assert.equal(isValidTimeZone('Europe/Moscow'), true);
    assert.equal(isValidTimeZone('Mars/Olympus'), false);
  });
});
