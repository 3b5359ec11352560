// Helpers that imitate how a PHP server (Bitrix24) reads requests and writes JSON.
// Written from the Bitrix24 docs: settings/how-to-call-rest-api/data-encoding.md
// (GET query, application/x-www-form-urlencoded and multipart/form-data with
// PHP-style nested keys `fields[TITLE]=x`, or a JSON body).
import type { IncomingMessage } from 'node:http';
import qs from 'qs';

export type Params = Record<string, unknown>;

const QS_OPTIONS = { depth: 32, arrayLimit: 1000, parameterLimit: 100_000, allowPrototypes: false, allowDots: false } as const;

/** `a[b][0]=1&a[c]=2` as PHP's `$_GET` / `$_POST` would read it. */
export function parsePhpQuery(query: string): Params {
  if (!query) return {};
  return qs.parse(query, QS_OPTIONS) as Params;
}

export async function readBody(req: IncomingMessage, limit = 10 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error('body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export interface ParsedRequest {
  params: Params;
  /** The parameters that came in the body alone. */
  bodyParams: Params;
  /** What the body was read as. */
  bodyKind: 'none' | 'json' | 'form' | 'multipart' | 'invalid-json' | 'other';
}

/**
 * Query parameters merged with the body (the body wins, as `$_REQUEST` with
 * POST after GET). JSON bodies are decoded as JSON; form bodies with qs.
 */
export async function readParams(req: IncomingMessage, url: URL, body: Buffer): Promise<ParsedRequest> {
  const query = parsePhpQuery(url.search.slice(1));
  if (body.length === 0) return { params: query, bodyParams: {}, bodyKind: 'none' };
  const type = String(req.headers['content-type'] ?? '').toLowerCase();
  if (type.includes('application/json')) {
    try {
      const value = JSON.parse(body.toString('utf8')) as unknown;
      if (value && typeof value === 'object') return { params: { ...query, ...(value as Params) }, bodyParams: value as Params, bodyKind: 'json' };
      return { params: query, bodyParams: {}, bodyKind: 'json' };
    } catch {
      return { params: query, bodyParams: {}, bodyKind: 'invalid-json' };
    }
  }
  if (type.includes('multipart/form-data')) {
    const form = await new Request('http://fake.invalid/', { method: 'POST', headers: { 'content-type': String(req.headers['content-type']) }, body }).formData();
    const flat = new URLSearchParams();
    for (const [key, value] of form.entries()) if (typeof value === 'string') flat.append(key, value);
    const bodyParams = parsePhpQuery(flat.toString());
    return { params: { ...query, ...bodyParams }, bodyParams, bodyKind: 'multipart' };
  }
  // A body without a known Content-Type is not read (PHP fills $_POST only for form types).
  if (type.includes('application/x-www-form-urlencoded')) {
    const bodyParams = parsePhpQuery(body.toString('utf8'));
    return { params: { ...query, ...bodyParams }, bodyParams, bodyKind: 'form' };
  }
  return { params: query, bodyParams: {}, bodyKind: 'other' };
}

/**
 * PHP's json_encode of an array: a list (keys 0..n-1 in order) becomes a JSON
 * array, anything else an object, and an empty array is `[]` (never `{}`).
 * That is why the batch answer shows `"result_error": []` when there are none.
 */
export function phpArray(entries: Array<[string, unknown]>): unknown {
  if (entries.length === 0) return [];
  const isList = entries.every(([key], index) => key === String(index));
  return isList ? entries.map(([, value]) => value) : Object.fromEntries(entries);
}

/** Entries of a PHP array that arrived either as a JSON array or as an object. */
export function phpEntries(value: unknown): Array<[string, unknown]> {
  if (Array.isArray(value)) return value.map((v, i) => [String(i), v]);
  if (value && typeof value === 'object') return Object.entries(value as Record<string, unknown>);
  return [];
}

export function isPhpArray(value: unknown): value is Record<string, unknown> | unknown[] {
  return !!value && typeof value === 'object';
}

/** An integer parameter as PHP's (int) cast of a numeric string would give it; null when it is not one. */
export function toInt(value: unknown): number | null {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^\s*[-+]?\d+\s*$/.test(value)) return Number.parseInt(value, 10);
  return null;
}

/** `2024-07-05T19:47:33+02:00`: the docs' datetime format, in the portal's offset. */
export function formatDateTime(ms: number, offsetMinutes: number): string {
  const local = new Date(Math.floor(ms / 1000) * 1000 + offsetMinutes * 60_000);
  const pad = (n: number) => String(n).padStart(2, '0');
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return (
    `${local.getUTCFullYear()}-${pad(local.getUTCMonth() + 1)}-${pad(local.getUTCDate())}` +
    `T${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())}:${pad(local.getUTCSeconds())}` +
    `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`
  );
}

export function parseOffset(offset: string): number {
  const m = /^([+-])(\d{2}):(\d{2})$/.exec(offset);
  if (!m) throw new Error(`bad UTC offset ${offset}, expected like +02:00`);
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}
