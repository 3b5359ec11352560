// A fake Bitrix24 portal for tests: one portal on 127.0.0.1, its REST API
// (incoming webhooks and OAuth tokens), the crm.type.* methods, batch, a few
// basic methods, its OAuth authorization server, the request limits and fault
// injection. Written from the official docs (bitrix24/b24restdocs), not from
// any adapter; see README.md next to this file for what it emulates and why.
import crypto from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RestError, TypeStore, TYPE_FIELDS, defaultRelationEligible, type StoredType, type TypeRules, type Warning, type YN, ALL_FLAGS, LINKED_USER_FIELD_KEYS, type FlagName, type LinkedKey } from './crm-types.js';
import { formatDateTime, parseOffset, parsePhpQuery, phpArray, phpEntries, readBody, readParams, toInt, type Params } from './php.js';

export { RestError } from './crm-types.js';
export type { StoredType, Warning } from './crm-types.js';

// ---------- options ----------

export interface FakeUser {
  id: number;
  name?: string;
  lastName?: string;
  email?: string;
  /** Portal administrator (profile.ADMIN). Default: true for user 1. */
  admin?: boolean;
  /** Administrative access to CRM: needed by every crm.type.* write, list and fields. Default true. */
  crmAdmin?: boolean;
  /** Read access to smart processes (crm.type.get / getByEntityTypeId for a non-admin). Default: crmAdmin. */
  canReadTypes?: boolean;
  /** false: an extranet user, crm.type.* answer 403 allowed_only_intranet_user. Default true. */
  intranet?: boolean;
}

export interface LimitsOptions {
  /** X of limits.md: the counter above which requests are refused (default 50). */
  burst?: number;
  /** Y of limits.md: how much the counter drops per second (default 2). */
  perSecond?: number;
  /** 'continuous' (default): drains smoothly; 'tick': drops by perSecond once per whole second. */
  drain?: 'continuous' | 'tick';
  /** 'strict' (default): at most `burst` requests from an empty bucket; 'literal': a request is refused only when the counter already exceeds `burst` (so burst+1 pass). */
  admit?: 'strict' | 'literal';
}

export interface OAuthOptions {
  clientId?: string;
  clientSecret?: string;
  /** Scopes granted to the application (default ['crm', 'user']). */
  scope?: string[];
  /** The application's redirect_uri (from its settings, never from the request). null: the code is shown on a page. */
  redirectUri?: string | null;
  accessTokenTtlSec?: number;
  refreshTokenTtlSec?: number;
  codeTtlMs?: number;
  /** `domain` of token answers is the authorization server's domain (docs), default 'oauth.bitrix.info'. */
  authServerDomain?: string;
  /** HTTP status of token-endpoint errors (the docs do not give one; default 400, as RFC 6749). */
  errorStatus?: number;
  /** The authorization_code answer: 'docs' (default) exactly the docs' example (no `expires`, no `user_id`); 'full' adds them. */
  codeAnswer?: 'docs' | 'full';
  /** Whether the old access token stays valid after a refresh (default true: it lives until it expires). */
  keepAccessOnRefresh?: boolean;
}

export interface FakeBitrix24Options {
  users?: FakeUser[];
  /** Scope of webhooks made by webhookUrl() (default ['crm']). `basic` methods are always allowed. */
  webhookScope?: string[];
  limits?: LimitsOptions | false;
  operating?: {
    /** Operating time a method may accumulate per application/webhook over 10 minutes (default 480 s, the docs' example). */
    limitSeconds?: number;
    /** Simulated run time added per call of a method, in seconds (e.g. {'crm.type.list': 30}). */
    costSeconds?: Record<string, number>;
  };
  oauth?: OAuthOptions;
  /** Error for an unknown OAuth access token: 'NO_AUTH_FOUND' (default, system-errors.md) or 'invalid_token'. */
  invalidTokenError?: 'NO_AUTH_FOUND' | 'invalid_token';
  /** More than 50 batch commands: 'per-command' (default, batch.md: "subqueries beyond the limit will end with an error") or 'request' (400 for the whole call). */
  batchOverLimit?: 'per-command' | 'request';
  /** Rules of the native types (interpretations of the docs; see README). */
  types?: Partial<Omit<TypeRules, 'offsetMinutes'>>;
  /** Portal UTC offset for datetimes (default '+02:00', as the docs' examples). */
  utcOffset?: string;
  /** Clock (ms). Default Date.now; `clock.advance()` adds to it either way. */
  now?: () => number;
  memberId?: string;
}

// ---------- records ----------

export interface CallRecord {
  seq: number;
  at: number;
  httpMethod: string;
  /** Method as called, lower-cased and without `.json`. */
  method: string;
  transport: 'webhook' | 'oauth' | 'none';
  /** Where the credential was found. */
  authVia?: 'path' | 'body' | 'query' | 'bearer';
  userId?: number;
  webhookId?: number;
  /** Serial of the access token (see oauth.tokenId); the token itself is not kept. */
  tokenId?: number;
  clientId?: string;
  bodyKind: string;
  /** Parameters without `auth`. */
  params: Params;
  status?: number;
  error?: string | number;
  fault?: string;
  /** seq of the batch call this command belongs to. */
  inBatch?: number;
  batchKey?: string;
}

export interface TokenCallRecord {
  seq: number;
  at: number;
  grantType: string;
  clientId: string;
  status: number;
  error?: string;
  fault?: string;
  userId?: number;
}

export interface Stats {
  restRequests: number;
  byMethod: Record<string, number>;
  /** Answers per error code (string codes; the number 0 as "0"). */
  errors: Record<string, number>;
  queryLimitExceeded: number;
  operationTimeLimit: number;
  maxBucketLevel: number;
  tokenRequests: number;
  tokensIssued: number;
  tokensRefreshed: number;
  codesExchanged: number;
  invalidGrant: number;
  dropped: number;
  hung: number;
  answersLost: number;
}

export type Fault =
  | { kind: 'latency'; ms: number }
  | { kind: 'error'; status: number; error: string | number; description: string }
  | { kind: 'drop' }
  | { kind: 'hang' }
  | { kind: 'lose-answer' }
  /** The call is carried out and answered 200 with `{"result": []}`: not the documented shape (a proxy, a portal bug). */
  | { kind: 'garble-answer' };

interface FaultRule {
  method: string;
  fault: Fault;
  remaining: number;
}

interface Webhook {
  id: number;
  userId: number;
  secret: string;
  scope: string[];
  expiresAt: number | null;
}

interface AccessToken {
  id: number;
  token: string;
  userId: number;
  clientId: string;
  expiresAt: number;
  revoked: boolean;
}

interface RefreshToken {
  token: string;
  userId: number;
  clientId: string;
  expiresAt: number;
  used: boolean;
}

interface AuthCode {
  code: string;
  clientId: string;
  userId: number;
  expiresAt: number;
  used: boolean;
}

interface Principal {
  kind: 'webhook' | 'oauth';
  userId: number;
  scopes: string[];
  credentialKey: string;
  clientId?: string;
}

interface Basket {
  minute: number;
  firstAt: number;
  sum: number;
}

interface TimeInfo {
  start: number;
  finish: number;
  processingMs: number;
  operating?: number;
  operatingResetAt?: number;
}

type Outcome = { ok: true; result: unknown; total?: number; next?: number; time: TimeInfo } | { ok: false; status: number; error: string | number; description: string };

/** Every scope of api-reference/scopes/permissions.md (for `scope` with full=true). */
const ALL_SCOPES = [
  'ai_admin', 'biconnector', 'bizproc', 'booking', 'calendar', 'call', 'cashbox', 'catalog', 'contact_center', 'crm', 'documentgenerator', 'delivery', 'department',
  'disk', 'entity', 'humanresources', 'humanresources.hcmlink', 'im', 'imbot', 'imconnector', 'imopenlines', 'intranet', 'landing', 'lists', 'log', 'mailservice',
  'main', 'messageservice', 'mobile', 'pay_system', 'placement', 'pull', 'rpa', 'sale', 'salescenter', 'sign.b2e', 'sonet_group', 'socialnetwork', 'task',
  'telephony', 'timeman', 'user', 'user_brief', 'user_basic', 'user.userfield', 'userfieldconfig', 'userconsent', 'vote',
];

const randomToken = (length = 32) => {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.randomBytes(length);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
};

const lower = (method: string) => method.toLowerCase();

// ---------- the fake ----------

export type FakeBitrix24 = Awaited<ReturnType<typeof startFakeBitrix24>>;

export async function startFakeBitrix24(options: FakeBitrix24Options = {}) {
  let clockOffset = 0;
  const baseNow = options.now ?? Date.now;
  const now = () => baseNow() + clockOffset;
  const offsetMinutes = parseOffset(options.utcOffset ?? '+02:00');
  const memberId = options.memberId ?? crypto.randomBytes(16).toString('hex');

  const limits = options.limits === false ? null : { burst: 50, perSecond: 2, drain: 'continuous' as const, admit: 'strict' as const, ...options.limits };
  const operatingLimit = options.operating?.limitSeconds ?? 480;
  const operatingCost = new Map(Object.entries(options.operating?.costSeconds ?? {}).map(([m, s]) => [lower(m), s]));
  const oauthOptions = {
    clientId: 'local.fake0000000001.00000001',
    clientSecret: randomToken(50),
    scope: ['crm', 'user'],
    redirectUri: null as string | null,
    accessTokenTtlSec: 3600,
    refreshTokenTtlSec: 180 * 24 * 3600,
    codeTtlMs: 30_000,
    authServerDomain: 'oauth.bitrix.info',
    errorStatus: 400,
    codeAnswer: 'docs' as 'docs' | 'full',
    keepAccessOnRefresh: true,
    ...options.oauth,
  };

  const rules: TypeRules = {
    flagSpellings: 'YN',
    truthy: 'string-true',
    relationsUpdate: 'whole',
    linkedUserFieldsNeed: 'resulting-flag',
    lowRangeEnd: 191,
    autoEntityTypeId: 'counter-1030',
    relationEligible: defaultRelationEligible,
    maxTypes: null,
    writeAnswerRelations: 'after',
    customSectionIds: null,
    ...options.types,
    offsetMinutes,
  };
  const store = new TypeStore(rules);

  const users = new Map<number, Required<FakeUser>>();
  const addUser = (u: FakeUser) => {
    const crmAdmin = u.crmAdmin ?? true;
    const full: Required<FakeUser> = {
      id: u.id,
      name: u.name ?? `User${u.id}`,
      lastName: u.lastName ?? 'Fake',
      email: u.email ?? `user${u.id}@fake.invalid`,
      admin: u.admin ?? u.id === 1,
      crmAdmin,
      canReadTypes: u.canReadTypes ?? crmAdmin,
      intranet: u.intranet ?? true,
    };
    users.set(full.id, full);
    return full;
  };
  for (const u of options.users ?? [{ id: 1, name: 'Admin', lastName: 'Portal' }]) addUser(u);

  const webhooks: Webhook[] = [];
  let webhookSeq = 0;
  const addWebhook = (w: { userId: number; secret?: string; scope?: string[]; expiresAt?: number | null }): Webhook => {
    const hook: Webhook = { id: ++webhookSeq, userId: w.userId, secret: w.secret ?? randomToken(16), scope: w.scope ?? options.webhookScope ?? ['crm'], expiresAt: w.expiresAt ?? null };
    webhooks.push(hook);
    return hook;
  };

  const accessTokens = new Map<string, AccessToken>();
  const refreshTokens = new Map<string, RefreshToken>();
  const authCodes = new Map<string, AuthCode>();
  let tokenSeq = 0;
  const issuedTo: { tokenId: number; userId: number; grant: 'authorization_code' | 'refresh_token' | 'issued' }[] = [];
  const oauthState = { authorizingUserId: 1, paymentRequired: false, installed: true, allowedUserIds: null as number[] | null };

  const calls: CallRecord[] = [];
  const tokenCalls: TokenCallRecord[] = [];
  const warnings: Warning[] = [];
  let seq = 0;
  const emptyStats = (): Stats => ({
    restRequests: 0,
    byMethod: {},
    errors: {},
    queryLimitExceeded: 0,
    operationTimeLimit: 0,
    maxBucketLevel: 0,
    tokenRequests: 0,
    tokensIssued: 0,
    tokensRefreshed: 0,
    codesExchanged: 0,
    invalidGrant: 0,
    dropped: 0,
    hung: 0,
    answersLost: 0,
  });
  const stats = emptyStats();

  const faults: FaultRule[] = [];
  let movedTo: string | null = null;
  let updateRestricted = false;

  // ---------- leaky bucket (settings/performance/limits.md) ----------

  const bucket = { level: 0, last: now(), lastTick: 0 };
  const drain = () => {
    if (!limits) return;
    const t = now();
    if (limits.drain === 'tick') {
      const tick = Math.floor(t / 1000);
      if (bucket.lastTick) bucket.level = Math.max(0, bucket.level - (tick - bucket.lastTick) * limits.perSecond);
      bucket.lastTick = tick;
    } else bucket.level = Math.max(0, bucket.level - ((t - bucket.last) / 1000) * limits.perSecond);
    bucket.last = t;
  };
  /** true if admitted (and counted). */
  const admit = (): boolean => {
    if (!limits) return true;
    drain();
    const refused = limits.admit === 'strict' ? bucket.level + 1 > limits.burst + 1e-9 : bucket.level > limits.burst;
    if (refused) return false;
    bucket.level += 1;
    stats.maxBucketLevel = Math.max(stats.maxBucketLevel, bucket.level);
    return true;
  };

  // ---------- operating time (limits.md "Resource Intensity Limits") ----------

  const baskets = new Map<string, Basket[]>();
  const liveBaskets = (key: string): Basket[] => {
    const t = now();
    const list = (baskets.get(key) ?? []).filter((b) => b.firstAt + 600_000 > t);
    baskets.set(key, list);
    return list;
  };
  const operatingOf = (key: string) => {
    const list = liveBaskets(key);
    return { sum: list.reduce((a, b) => a + b.sum, 0), resetAt: list.length ? Math.floor((list[0]!.firstAt + 600_000) / 1000) : undefined };
  };
  const addOperating = (key: string, seconds: number) => {
    const t = now();
    const minute = Math.floor(t / 60_000);
    const list = liveBaskets(key);
    const last = list[list.length - 1];
    if (last && last.minute === minute) last.sum += seconds;
    else list.push({ minute, firstAt: t, sum: seconds });
  };

  // ---------- auth ----------

  const invalidAuth = () => new RestError(401, 'NO_AUTH_FOUND', 'Wrong authorization data');

  function resolvePrincipal(parts: { webhook?: { userId: string; secret: string }; params: Params; req: IncomingMessage }, record: CallRecord): Principal {
    if (parts.webhook) {
      record.transport = 'webhook';
      record.authVia = 'path';
      const userId = toInt(parts.webhook.userId);
      const hook = webhooks.find((w) => w.secret === parts.webhook!.secret && w.userId === userId);
      if (!hook || (hook.expiresAt !== null && hook.expiresAt <= now()) || !users.has(hook.userId)) throw invalidAuth();
      record.userId = hook.userId;
      record.webhookId = hook.id;
      return { kind: 'webhook', userId: hook.userId, scopes: hook.scope, credentialKey: `webhook:${hook.id}` };
    }
    let token: string | undefined;
    if (typeof parts.params.auth === 'string' && parts.params.auth) {
      token = parts.params.auth;
      record.authVia = record.authVia ?? 'body';
    } else {
      const header = String(parts.req.headers.authorization ?? '');
      const m = /^Bearer\s+(\S+)$/i.exec(header);
      if (m) {
        token = m[1];
        record.authVia = 'bearer';
      }
    }
    if (!token) throw invalidAuth();
    record.transport = 'oauth';
    const access = accessTokens.get(token);
    if (!access || access.revoked) {
      if (options.invalidTokenError === 'invalid_token') throw new RestError(401, 'invalid_token', 'The access token provided is invalid.');
      throw invalidAuth();
    }
    record.tokenId = access.id;
    record.userId = access.userId;
    record.clientId = access.clientId;
    if (access.expiresAt <= now()) throw new RestError(401, 'expired_token', 'The access token provided has expired.');
    if (oauthState.allowedUserIds && !oauthState.allowedUserIds.includes(access.userId)) throw new RestError(403, 'user_access_error', 'The user does not have access to the application.');
    return { kind: 'oauth', userId: access.userId, scopes: oauthOptions.scope, credentialKey: `app:${access.clientId}`, clientId: access.clientId };
  }

  // ---------- methods ----------

  interface MethodContext {
    principal: Principal;
    method: string;
    warn: (what: string, value?: unknown) => void;
  }
  interface Answer {
    result: unknown;
    total?: number;
    next?: number;
  }
  interface MethodSpec {
    scope: 'basic' | 'crm' | 'user';
    crm?: 'admin' | 'read';
    handler: (params: Params, ctx: MethodContext) => Answer | Promise<Answer>;
  }

  const userOf = (ctx: MethodContext) => users.get(ctx.principal.userId)!;
  const writeCtx = (ctx: MethodContext) => ({ method: ctx.method, userId: ctx.principal.userId, now: now(), warn: ctx.warn });
  const missing = (name: string) => new RestError(400, 100, `Could not find value for parameter {${name}}`);
  const hasParam = (params: Params, name: string) => params[name] !== undefined && params[name] !== null && params[name] !== '';
  const typeById = (params: Params, notFound: string): StoredType => {
    const id = toInt(params.id);
    const t = id === null ? undefined : store.byId(id);
    if (!t) throw new RestError(400, 0, notFound);
    return t;
  };

  const methods: Record<string, MethodSpec> = {
    // crm-type-add.md
    'crm.type.add': {
      scope: 'crm',
      crm: 'admin',
      handler: (params, ctx) => {
        if (!params.fields || typeof params.fields !== 'object') throw missing('fields');
        const t = store.add(params.fields as Params, writeCtx(ctx));
        const card = store.card(t);
        if (rules.writeAnswerRelations === 'before') card.relations = { parent: [], child: [] };
        return { result: { type: card } };
      },
    },
    // crm-type-update.md
    'crm.type.update': {
      scope: 'crm',
      crm: 'admin',
      handler: (params, ctx) => {
        if (!hasParam(params, 'id')) throw missing('id');
        const t = typeById(params, 'SPA not found');
        if (updateRestricted) throw new RestError(400, 'UPDATE_DYNAMIC_TYPE_RESTRICTED', "You cannot change the SPA settings due to your plan's restrictions");
        const fields = params.fields && typeof params.fields === 'object' ? (params.fields as Params) : {};
        const relationsBefore = store.relationsOf(t);
        store.update(t, fields, writeCtx(ctx));
        const card = store.card(t);
        if (rules.writeAnswerRelations === 'before') card.relations = relationsBefore;
        return { result: { type: card } };
      },
    },
    // crm-type-get.md
    'crm.type.get': {
      scope: 'crm',
      crm: 'read',
      handler: (params) => {
        if (!hasParam(params, 'id')) throw missing('id');
        return { result: { type: store.card(typeById(params, 'SPA not found')) } };
      },
    },
    // crm-type-get-by-entity-type-id.md
    'crm.type.getbyentitytypeid': {
      scope: 'crm',
      crm: 'read',
      handler: (params) => {
        if (!hasParam(params, 'entityTypeId')) throw missing('entityTypeId');
        const x = toInt(params.entityTypeId);
        const t = x === null ? undefined : store.byEntityTypeId(x);
        if (!t) throw new RestError(400, 0, 'Smart process not found');
        return { result: { type: store.card(t) } };
      },
    },
    // crm-type-list.md + list-methods-pecularities.md + performance/huge-data.md (start=-1)
    'crm.type.list': {
      scope: 'crm',
      crm: 'admin',
      handler: (params) => {
        const rows = store.list(params.order, params.filter);
        const start = toInt(params.start) ?? 0;
        if (start === -1) return { result: { types: rows.slice(0, 50).map((t) => store.light(t)) }, total: 0 };
        const offset = Math.max(0, start);
        const page = rows.slice(offset, offset + 50);
        const answer: Answer = { result: { types: page.map((t) => store.light(t)) }, total: rows.length };
        if (offset + 50 < rows.length) answer.next = offset + 50;
        return answer;
      },
    },
    // crm-type-delete.md
    'crm.type.delete': {
      scope: 'crm',
      crm: 'admin',
      handler: (params) => {
        // "If result returns null, it is likely that the required parameter id was not provided."
        if (!hasParam(params, 'id')) return { result: null };
        const t = typeById(params, 'Smart process not found');
        if (t.itemCount > 0) throw new RestError(400, 'BX_ERROR', 'You cannot delete an entity type that has elements');
        store.remove(t);
        return { result: [] };
      },
    },
    // crm-type-fields.md
    'crm.type.fields': { scope: 'crm', crm: 'admin', handler: () => ({ result: { fields: TYPE_FIELDS } }) },
    // user/user-current.md (scope user, user_brief or user_basic)
    'user.current': {
      scope: 'user',
      handler: (_params, ctx) => {
        const u = userOf(ctx);
        const date = formatDateTime(now(), offsetMinutes);
        return {
          result: {
            ID: String(u.id),
            ACTIVE: true,
            NAME: u.name,
            LAST_NAME: u.lastName,
            EMAIL: u.email,
            LAST_LOGIN: date,
            DATE_REGISTER: date,
            IS_ONLINE: 'Y',
            LAST_ACTIVITY_DATE: date.slice(0, 19).replace('T', ' '),
            PERSONAL_GENDER: '',
            PERSONAL_BIRTHDAY: '',
            WORK_POSITION: '',
            UF_EMPLOYMENT_DATE: '',
            UF_DEPARTMENT: [1],
          },
        };
      },
    },
    // common/users/profile.md
    profile: {
      scope: 'basic',
      handler: (_params, ctx) => {
        const u = userOf(ctx);
        return { result: { ID: String(u.id), ADMIN: u.admin, NAME: u.name, LAST_NAME: u.lastName, PERSONAL_GENDER: '', TIME_ZONE: '' } };
      },
    },
    // common/system/scope.md
    scope: {
      scope: 'basic',
      handler: (params, ctx) => {
        const full = params.full === true || params.full === 'true' || params.full === 1 || params.full === '1' || params.full === 'Y';
        return { result: full ? ALL_SCOPES : [...ctx.principal.scopes] };
      },
    },
    // common/system/method-get.md
    'method.get': {
      scope: 'basic',
      handler: (params, ctx) => {
        const name = typeof params.name === 'string' ? lower(params.name) : '';
        const spec = name ? methods[name] : undefined;
        return { result: { isExisting: !!spec, isAvailable: !!spec && scopeAllows(spec, ctx.principal) } };
      },
    },
    // common/system/server-time.md
    'server.time': { scope: 'basic', handler: () => ({ result: formatDateTime(now(), offsetMinutes) }) },
    // common/system/app-info.md: only in the context of an application
    'app.info': {
      scope: 'basic',
      handler: (_params, ctx) => {
        if (ctx.principal.kind !== 'oauth') throw new RestError(400, 'ACCESS_DENIED', 'Access denied! Application context required');
        return {
          result: { ID: 1, CODE: ctx.principal.clientId, VERSION: 1, STATUS: 'L', INSTALLED: oauthState.installed, PAYMENT_EXPIRED: 'N', DAYS: null, LANGUAGE_ID: 'en', LICENSE: 'en_pro100', LICENSE_TYPE: 'pro100', LICENSE_FAMILY: 'pro' },
        };
      },
    },
  };

  function scopeAllows(spec: MethodSpec, p: Principal): boolean {
    if (spec.scope === 'basic') return true;
    if (spec.scope === 'user') return p.scopes.some((s) => s === 'user' || s === 'user_brief' || s === 'user_basic');
    return p.scopes.includes(spec.scope);
  }

  /** Runs one method (a top-level call or a batch command): scope, access, operating time, the handler. */
  async function execute(method: string, params: Params, principal: Principal, record: CallRecord): Promise<Outcome> {
    const start = now();
    const t0 = performance.now();
    try {
      const spec = methods[method];
      if (!spec) throw new RestError(404, 'ERROR_METHOD_NOT_FOUND', 'Method not found!');
      if (!scopeAllows(spec, principal)) throw new RestError(403, 'insufficient_scope', 'The request requires higher privileges than provided by the webhook token');
      if (spec.crm) {
        const u = users.get(principal.userId)!;
        if (!u.intranet) throw new RestError(403, 'allowed_only_intranet_user', 'Action allowed only for intranet users');
        if (spec.crm === 'admin' ? !u.crmAdmin : !u.crmAdmin && !u.canReadTypes) throw new RestError(400, 'ACCESS_DENIED', 'Access denied');
      }
      const opKey = `${principal.credentialKey}|${method}`;
      if (operatingOf(opKey).sum > operatingLimit || operatingOf(`*|${method}`).sum > operatingLimit) {
        stats.operationTimeLimit++;
        throw new RestError(429, 'OPERATION_TIME_LIMIT', `Method is blocked due to operation time limit.`);
      }
      const errorFault = takeFault(method, (f) => f.kind === 'error', record.inBatch !== undefined);
      if (errorFault && errorFault.kind === 'error') {
        record.fault = `error ${errorFault.error}`;
        throw new RestError(errorFault.status, errorFault.error, errorFault.description);
      }
      const ctx: MethodContext = { principal, method, warn: (what, value) => warnings.push({ method, what, value }) };
      const answer = await spec.handler(params, ctx);
      const processingMs = performance.now() - t0;
      addOperating(opKey, processingMs / 1000 + (operatingCost.get(method) ?? 0));
      const op = operatingOf(opKey);
      return { ok: true, ...answer, time: { start, finish: now(), processingMs, operating: op.sum, operatingResetAt: op.resetAt } };
    } catch (error) {
      if (error instanceof RestError) return { ok: false, status: error.status, error: error.code, description: error.description };
      return { ok: false, status: 500, error: 'INTERNAL_SERVER_ERROR', description: `Internal server error (fake: ${(error as Error).message})` };
    }
  }

  const timeObject = (t: TimeInfo, withOperating: boolean) => {
    const finish = Math.max(t.finish, t.start);
    const o: Record<string, unknown> = {
      start: t.start / 1000,
      finish: finish / 1000,
      duration: (finish - t.start) / 1000,
      processing: t.processingMs / 1000,
      date_start: formatDateTime(t.start, offsetMinutes),
      date_finish: formatDateTime(finish, offsetMinutes),
    };
    if (withOperating) {
      if (t.operatingResetAt !== undefined) o.operating_reset_at = t.operatingResetAt;
      o.operating = t.operating ?? 0;
    }
    return o;
  };

  // ---------- batch (settings/how-to-call-rest-api/batch.md) ----------

  async function runBatch(params: Params, principal: Principal, parent: CallRecord): Promise<Outcome> {
    const start = now();
    const t0 = performance.now();
    const halt = params.halt === true || params.halt === 1 || params.halt === '1' || params.halt === 'true' || params.halt === 'Y';
    const commands = phpEntries(params.cmd);
    if (commands.length > 50 && options.batchOverLimit === 'request') return { ok: false, status: 400, error: 'ERROR_BATCH_LENGTH_EXCEEDED', description: 'Max batch length exceeded' };
    const results: Array<[string, unknown]> = [];
    const resultByKey = new Map<string, unknown>();
    const errors: Array<[string, unknown]> = [];
    const totals: Array<[string, unknown]> = [];
    const nexts: Array<[string, unknown]> = [];
    const times: Array<[string, unknown]> = [];
    let index = 0;
    for (const [key, raw] of commands) {
      index++;
      if (index > 50) {
        errors.push([key, { error: 'ERROR_BATCH_LENGTH_EXCEEDED', error_description: 'Max batch length exceeded' }]);
        if (halt) break;
        continue;
      }
      const text = typeof raw === 'string' ? raw : '';
      const q = text.indexOf('?');
      const method = lower((q < 0 ? text : text.slice(0, q)).replace(/\.json$/i, ''));
      const query = q < 0 ? '' : substituteResults(text.slice(q + 1), resultByKey);
      const subParams = parsePhpQuery(query);
      delete subParams.auth;
      const record: CallRecord = { seq: ++seq, at: now(), httpMethod: 'BATCH', method, transport: parent.transport, authVia: parent.authVia, userId: parent.userId, webhookId: parent.webhookId, tokenId: parent.tokenId, clientId: parent.clientId, bodyKind: 'batch', params: subParams, inBatch: parent.seq, batchKey: key };
      calls.push(record);
      stats.byMethod[method] = (stats.byMethod[method] ?? 0) + 1;
      let outcome: Outcome;
      if (method === 'batch') outcome = { ok: false, status: 405, error: 'ERROR_BATCH_METHOD_NOT_ALLOWED', description: 'Method is not allowed for batch usage' };
      else outcome = await execute(method, subParams, principal, record);
      record.status = outcome.ok ? 200 : outcome.status;
      if (!outcome.ok) {
        record.error = outcome.error;
        countError(outcome.error);
        errors.push([key, { error: outcome.error, error_description: outcome.description }]);
        if (halt) break;
        continue;
      }
      results.push([key, outcome.result]);
      resultByKey.set(key, outcome.result);
      if (outcome.total !== undefined) totals.push([key, outcome.total]);
      if (outcome.next !== undefined) nexts.push([key, outcome.next]);
      times.push([key, timeObject(outcome.time, false)]);
    }
    return {
      ok: true,
      result: { result: phpArray(results), result_error: phpArray(errors), result_total: phpArray(totals), result_next: phpArray(nexts), result_time: phpArray(times) },
      time: { start, finish: now(), processingMs: performance.now() - t0 },
    };
  }

  /** `$result[get_user][UF_DEPARTMENT][0]` in a command's query takes that value from an earlier command. */
  function substituteResults(query: string, results: Map<string, unknown>): string {
    return query.replace(/\$result\[([^\]]+)\]((?:\[[^\]]*\])*)/g, (_m, key: string, path: string) => {
      let value: unknown = results.get(key);
      for (const [, segment] of path.matchAll(/\[([^\]]*)\]/g)) value = value && typeof value === 'object' ? (value as Record<string, unknown>)[segment!] : undefined;
      if (value === undefined || value === null) return '';
      return encodeURIComponent(typeof value === 'object' ? JSON.stringify(value) : String(value));
    });
  }

  // ---------- faults ----------

  function takeFault(method: string, accept: (f: Fault) => boolean, inBatch = false): Fault | null {
    for (const rule of faults) {
      if (rule.remaining <= 0) continue;
      if (rule.method === '*' ? method === 'oauth.token' : rule.method !== method) continue; // '*' = any REST method, not the token endpoint
      if (!accept(rule.fault)) continue;
      if (inBatch && rule.fault.kind !== 'error') continue;
      rule.remaining--;
      return rule.fault;
    }
    return null;
  }

  const countError = (code: string | number) => {
    stats.errors[String(code)] = (stats.errors[String(code)] ?? 0) + 1;
  };

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const hanging = new Set<ServerResponse>();

  /** Applies latency, then a drop or hang. Returns true when the request must not be answered. */
  async function transportFaults(method: string, req: IncomingMessage, res: ServerResponse, note: (f: string) => void): Promise<boolean> {
    const latency = takeFault(method, (f) => f.kind === 'latency');
    if (latency && latency.kind === 'latency') {
      note(`latency ${latency.ms}ms`);
      await sleep(latency.ms);
    }
    const cut = takeFault(method, (f) => f.kind === 'drop' || f.kind === 'hang');
    if (cut?.kind === 'drop') {
      note('drop');
      stats.dropped++;
      req.socket.destroy();
      return true;
    }
    if (cut?.kind === 'hang') {
      note('hang');
      stats.hung++;
      hanging.add(res);
      res.on('close', () => hanging.delete(res));
      return true;
    }
    return false;
  }

  // ---------- HTTP ----------

  const send = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  async function handleRest(req: IncomingMessage, res: ServerResponse, url: URL) {
    const segments = url.pathname.split('/').filter(Boolean).slice(1); // after "rest"
    let webhook: { userId: string; secret: string } | undefined;
    let rawMethod: string;
    if (segments.length >= 3) {
      webhook = { userId: segments[0]!, secret: segments[1]! };
      rawMethod = segments.slice(2).join('/');
    } else rawMethod = segments.join('/');
    const method = lower(decodeURIComponent(rawMethod).replace(/\.json$/i, ''));
    const body = await readBody(req);
    const { params, bodyParams, bodyKind } = await readParams(req, url, body);
    const { auth: _auth, ...recorded } = params;
    const record: CallRecord = { seq: ++seq, at: now(), httpMethod: req.method ?? 'GET', method, transport: webhook ? 'webhook' : 'none', bodyKind, params: recorded };
    if (!webhook && typeof params.auth === 'string' && params.auth) record.authVia = 'auth' in bodyParams ? 'body' : 'query';
    calls.push(record);
    stats.restRequests++;
    stats.byMethod[method] = (stats.byMethod[method] ?? 0) + 1;
    const note = (f: string) => (record.fault = record.fault ? `${record.fault}, ${f}` : f);
    const fail = (status: number, error: string | number, description: string) => {
      record.status = status;
      record.error = error;
      countError(error);
      send(res, status, { error, error_description: description });
    };

    if (movedTo) {
      record.status = 302;
      res.writeHead(302, { location: movedTo.replace(/\/$/, '') + url.pathname + url.search });
      res.end();
      return;
    }
    if (await transportFaults(method, req, res, note)) return;
    if (!admit()) {
      stats.queryLimitExceeded++;
      return fail(503, 'QUERY_LIMIT_EXCEEDED', 'Too many requests');
    }
    let principal: Principal;
    try {
      principal = resolvePrincipal({ webhook, params, req }, record);
    } catch (error) {
      const e = error as RestError;
      return fail(e.status, e.code, e.description);
    }
    const { auth: _a, ...methodParams } = params;
    let outcome: Outcome;
    if (method === 'batch') {
      const batchFault = takeFault('batch', (f) => f.kind === 'error');
      if (batchFault?.kind === 'error') {
        note(`error ${batchFault.error}`);
        return fail(batchFault.status, batchFault.error, batchFault.description);
      }
      outcome = await runBatch(methodParams, principal, record);
    } else outcome = await execute(method, methodParams, principal, record);
    if (!outcome.ok) return fail(outcome.status, outcome.error, outcome.description);
    const lost = takeFault(method, (f) => f.kind === 'lose-answer');
    if (lost) {
      note('lose-answer');
      stats.answersLost++;
      record.status = 0;
      req.socket.destroy();
      return;
    }
    record.status = 200;
    if (takeFault(method, (f) => f.kind === 'garble-answer')) {
      note('garble-answer');
      send(res, 200, { result: [] });
      return;
    }
    const answer: Record<string, unknown> = { result: outcome.result };
    if (outcome.next !== undefined) answer.next = outcome.next;
    if (outcome.total !== undefined) answer.total = outcome.total;
    answer.time = timeObject(outcome.time, method !== 'batch');
    send(res, 200, answer);
  }

  // ---------- OAuth (settings/oauth/*.md) ----------

  function issueTokens(userId: number, clientId: string, grant: 'authorization_code' | 'refresh_token' | 'issued' = 'issued') {
    const access: AccessToken = { id: ++tokenSeq, token: randomToken(), userId, clientId, expiresAt: now() + oauthOptions.accessTokenTtlSec * 1000, revoked: false };
    issuedTo.push({ tokenId: access.id, userId, grant });
    const refresh: RefreshToken = { token: randomToken(), userId, clientId, expiresAt: now() + oauthOptions.refreshTokenTtlSec * 1000, used: false };
    accessTokens.set(access.token, access);
    refreshTokens.set(refresh.token, refresh);
    stats.tokensIssued++;
    return {
      access_token: access.token,
      client_endpoint: `${baseUrl}/rest/`,
      domain: oauthOptions.authServerDomain,
      expires: Math.floor(access.expiresAt / 1000),
      expires_in: oauthOptions.accessTokenTtlSec,
      member_id: memberId,
      refresh_token: refresh.token,
      scope: oauthOptions.scope.join(','),
      server_endpoint: `https://${oauthOptions.authServerDomain}/rest/`,
      status: 'L',
      user_id: userId,
    };
  }

  async function handleToken(req: IncomingMessage, res: ServerResponse, url: URL) {
    const body = await readBody(req);
    const { params } = await readParams(req, url, body);
    const grantType = typeof params.grant_type === 'string' ? params.grant_type : '';
    const record: TokenCallRecord = { seq: ++seq, at: now(), grantType, clientId: String(params.client_id ?? ''), status: 0 };
    tokenCalls.push(record);
    stats.tokenRequests++;
    const note = (f: string) => (record.fault = record.fault ? `${record.fault}, ${f}` : f);
    if (await transportFaults('oauth.token', req, res, note)) return;
    const fail = (error: string, description: string, status = oauthOptions.errorStatus) => {
      record.status = status;
      record.error = error;
      if (error === 'invalid_grant') stats.invalidGrant++;
      send(res, status, { error, error_description: description });
    };
    const errorFault = takeFault('oauth.token', (f) => f.kind === 'error');
    if (errorFault?.kind === 'error') {
      note(`error ${errorFault.error}`);
      return fail(String(errorFault.error), errorFault.description, errorFault.status);
    }
    const clientId = String(params.client_id ?? '');
    const clientSecret = String(params.client_secret ?? '');
    if (!grantType || !clientId || !clientSecret) return fail('invalid_request', 'Invalid request');
    if (clientId !== oauthOptions.clientId || clientSecret !== oauthOptions.clientSecret || !oauthState.installed) return fail('invalid_client', 'Invalid client');
    if (oauthState.paymentRequired) return fail('PAYMENT_REQUIRED', 'Payment required');
    let answer: Record<string, unknown>;
    if (grantType === 'refresh_token') {
      const given = String(params.refresh_token ?? '');
      if (!given) return fail('invalid_request', 'Invalid request');
      const r = refreshTokens.get(given);
      if (!r || r.used || r.expiresAt <= now() || r.clientId !== clientId) return fail('invalid_grant', 'Invalid grant');
      r.used = true;
      if (!oauthOptions.keepAccessOnRefresh) for (const a of accessTokens.values()) if (a.userId === r.userId && a.clientId === clientId) a.revoked = true;
      answer = issueTokens(r.userId, clientId, 'refresh_token');
      stats.tokensRefreshed++;
    } else if (grantType === 'authorization_code') {
      const given = String(params.code ?? '');
      if (!given) return fail('invalid_request', 'Invalid request');
      const c = authCodes.get(given);
      if (!c || c.used || c.expiresAt <= now() || c.clientId !== clientId) return fail('invalid_grant', 'Invalid grant');
      c.used = true;
      answer = issueTokens(c.userId, clientId, 'authorization_code');
      stats.codesExchanged++;
      record.userId = c.userId;
      if (oauthOptions.codeAnswer === 'docs') {
        delete answer.expires;
        delete answer.user_id;
      }
    } else return fail('invalid_request', `Unsupported grant_type ${grantType}`);
    record.userId ??= (answer.user_id as number | undefined) ?? undefined;
    const lost = takeFault('oauth.token', (f) => f.kind === 'lose-answer');
    if (lost) {
      note('lose-answer');
      stats.answersLost++;
      req.socket.destroy();
      return;
    }
    record.status = 200;
    send(res, 200, answer);
  }

  function handleAuthorize(_req: IncomingMessage, res: ServerResponse, url: URL) {
    const clientId = url.searchParams.get('client_id') ?? '';
    const page = (status: number, text: string) => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><title>Bitrix24</title><p>${text}</p>`);
    };
    // oauth/index.md: a failed authorization shows an error on Bitrix24's own page, no redirect.
    if (clientId !== oauthOptions.clientId || !oauthState.installed) return page(400, 'Application not found or not installed');
    const user = users.get(oauthState.authorizingUserId);
    if (!user) return page(400, 'User not found');
    const code: AuthCode = { code: randomToken(), clientId, userId: user.id, expiresAt: now() + oauthOptions.codeTtlMs, used: false };
    authCodes.set(code.code, code);
    if (!oauthOptions.redirectUri) return page(200, `Authorization code: <code id="code">${code.code}</code>`);
    const target = new URL(oauthOptions.redirectUri);
    target.searchParams.set('code', code.code);
    const state = url.searchParams.get('state');
    if (state !== null) target.searchParams.set('state', state);
    target.searchParams.set('domain', domain);
    target.searchParams.set('member_id', memberId);
    target.searchParams.set('scope', oauthOptions.scope.join(','));
    target.searchParams.set('server_domain', oauthOptions.authServerDomain);
    res.writeHead(302, { location: target.toString() });
    res.end();
  }

  // ---------- server ----------

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`);
    const path = url.pathname;
    const run = async () => {
      if (path === '/rest' || path.startsWith('/rest/')) return handleRest(req, res, url);
      if (path === '/oauth/token' || path === '/oauth/token/') return handleToken(req, res, url);
      if (path === '/oauth/authorize' || path === '/oauth/authorize/') return handleAuthorize(req, res, url);
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('Not found');
    };
    run().catch((error: unknown) => {
      if (!res.headersSent && !res.destroyed) send(res, 500, { error: 'INTERNAL_SERVER_ERROR', error_description: `fake portal: ${(error as Error).message}` });
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const domain = `127.0.0.1:${port}`;
  const baseUrl = `http://${domain}`;

  const defaultHooks = new Map<number, Webhook>();

  const typeRef = (ref: number | { id?: number; entityTypeId?: number }) => {
    const t = typeof ref === 'number' ? store.byId(ref) : ref.id !== undefined ? store.byId(ref.id) : store.byEntityTypeId(ref.entityTypeId!);
    if (!t) throw new Error(`fake portal: no type ${JSON.stringify(ref)}`);
    return t;
  };

  const toYN = (v: unknown, fallback: YN): YN => (v === undefined ? fallback : v === true || v === 'Y' ? 'Y' : 'N');

  return {
    /** Base URL of the portal, e.g. http://127.0.0.1:PORT */
    url: baseUrl,
    domain,
    memberId,
    /** OAuth client_endpoint: `${url}/rest/` */
    clientEndpoint: `${baseUrl}/rest/`,

    /** URL of an incoming webhook of that user (made on first use, scope from options.webhookScope), ending with '/'. */
    webhookUrl(userId = 1): string {
      let hook = defaultHooks.get(userId);
      if (!hook) {
        if (!users.has(userId)) addUser({ id: userId });
        hook = addWebhook({ userId });
        defaultHooks.set(userId, hook);
      }
      return `${baseUrl}/rest/${hook.userId}/${hook.secret}/`;
    },
    /** A further webhook with its own scope or expiry; returns its URL. */
    addWebhook(w: { userId?: number; scope?: string[]; expiresAt?: number | null; secret?: string } = {}): string {
      const userId = w.userId ?? 1;
      if (!users.has(userId)) addUser({ id: userId });
      const hook = addWebhook({ ...w, userId });
      return `${baseUrl}/rest/${hook.userId}/${hook.secret}/`;
    },
    /** Revokes every webhook whose URL is given (the secret stops working: NO_AUTH_FOUND). */
    revokeWebhook(webhookUrl: string) {
      const i = webhooks.findIndex((w) => webhookUrl.includes(`/rest/${w.userId}/${w.secret}/`));
      if (i >= 0) webhooks.splice(i, 1);
    },

    oauth: {
      get clientId() {
        return oauthOptions.clientId;
      },
      get clientSecret() {
        return oauthOptions.clientSecret;
      },
      /** Token endpoint of the fake authorization server. */
      tokenUrl: `${baseUrl}/oauth/token/`,
      /** Where a user is sent to authorize: `${url}/oauth/authorize/?client_id=…&state=…` */
      authorizeUrl(state?: string) {
        const u = new URL(`${baseUrl}/oauth/authorize/`);
        u.searchParams.set('client_id', oauthOptions.clientId);
        if (state !== undefined) u.searchParams.set('state', state);
        return u.toString();
      },
      /** A fresh token pair for a user, as the refresh answer shapes it (for tests that start with tokens). */
      issueTokens(o: { userId?: number } = {}) {
        const userId = o.userId ?? 1;
        if (!users.has(userId)) addUser({ id: userId });
        return issueTokens(userId, oauthOptions.clientId);
      },
      /** Access tokens expire now (all, or the one given): the next call answers 401 expired_token. */
      expireAccessTokens(token?: string) {
        for (const a of accessTokens.values()) if (!token || a.token === token) a.expiresAt = Math.min(a.expiresAt, now() - 1);
      },
      /** An access token becomes unknown (invalid). */
      revokeAccessToken(token: string) {
        const a = accessTokens.get(token);
        if (a) a.revoked = true;
      },
      /** A refresh token dies (all when none is given): refresh answers invalid_grant. */
      revokeRefreshTokens(token?: string) {
        for (const r of refreshTokens.values()) if (!token || r.token === token) r.used = true;
      },
      /** Serial number of an access token, as recorded in calls[].tokenId. */
      tokenId(token: string): number | undefined {
        return accessTokens.get(token)?.id;
      },
      /** Whether a refresh token can still be used. */
      isRefreshTokenAlive(token: string): boolean {
        const r = refreshTokens.get(token);
        return !!r && !r.used && r.expiresAt > now();
      },
      setAccessTokenTtl(seconds: number) {
        oauthOptions.accessTokenTtlSec = seconds;
      },
      /**
       * The application's redirect URI, a setting of the application in Bitrix24 (oauth/index.md:
       * "This address is not passed in the authorization request; Bitrix24 takes it from the
       * application settings"); null: the code is shown on a page.
       */
      set redirectUri(uri: string | null) {
        oauthOptions.redirectUri = uri;
      },
      get redirectUri() {
        return oauthOptions.redirectUri;
      },
      /** Serial numbers (calls[].tokenId) of the access tokens issued to a user, oldest first, with the grant that issued them. */
      tokensOf(userId: number): { tokenId: number; grant: 'authorization_code' | 'refresh_token' | 'issued' }[] {
        return issuedTo.filter((t) => t.userId === userId).map(({ tokenId, grant }) => ({ tokenId, grant }));
      },
      /** Every access token, refresh token and authorization code issued so far (for tests that look for secrets in logs and answers). */
      issuedSecrets(): string[] {
        return [...accessTokens.keys(), ...refreshTokens.keys(), ...authCodes.keys(), oauthOptions.clientSecret];
      },
      /** A user's access tokens expire now: their next call answers 401 expired_token. */
      expireAccessTokensOf(userId: number) {
        for (const a of accessTokens.values()) if (a.userId === userId) a.expiresAt = Math.min(a.expiresAt, now() - 1);
      },
      /** A user's access tokens become unknown and refresh tokens dead (e.g. the user was dismissed or the application uninstalled for them). */
      revokeTokensOf(userId: number) {
        for (const a of accessTokens.values()) if (a.userId === userId) a.revoked = true;
        for (const r of refreshTokens.values()) if (r.userId === userId) r.used = true;
      },
      /** The user who "is logged in" when /oauth/authorize/ is opened. */
      set authorizingUserId(id: number) {
        oauthState.authorizingUserId = id;
      },
      get authorizingUserId() {
        return oauthState.authorizingUserId;
      },
      /** Token endpoint answers PAYMENT_REQUIRED while true. */
      set paymentRequired(v: boolean) {
        oauthState.paymentRequired = v;
      },
      /** false: the application is not installed (authorize page error, invalid_client). */
      set installed(v: boolean) {
        oauthState.installed = v;
      },
      /** Only these users may use the application (others: 403 user_access_error); null = everyone. */
      set allowedUserIds(v: number[] | null) {
        oauthState.allowedUserIds = v;
      },
      calls: tokenCalls,
    },

    state: {
      /** Native cards of every type, ordered by id (as crm.type.get would return them). */
      types(): Array<Record<string, unknown>> {
        return [...store.types.values()].sort((a, b) => a.id - b.id).map((t) => store.card(t));
      },
      /** The native card of one type by id or {entityTypeId}, or undefined. */
      type(ref: number | { id?: number; entityTypeId?: number }): Record<string, unknown> | undefined {
        try {
          return store.card(typeRef(ref));
        } catch {
          return undefined;
        }
      },
      /**
       * Puts a type in the portal directly (as if made in Bitrix24's UI): no rules
       * are applied. Flags take 'Y'/'N' or booleans; relations are stored as given.
       */
      seedType(seed: {
        title: string;
        entityTypeId?: number;
        id?: number;
        code?: string;
        createdBy?: number;
        customSectionId?: number | null;
        createdTime?: number;
        updatedTime?: number;
        itemCount?: number;
        relations?: { parent?: Array<{ entityTypeId: number; isChildrenListEnabled?: YN | boolean }>; child?: Array<{ entityTypeId: number; isChildrenListEnabled?: YN | boolean }> };
        linkedUserFields?: Partial<Record<LinkedKey, YN | boolean>>;
      } & Partial<Record<FlagName, YN | boolean>>): Record<string, unknown> {
        const t0 = now();
        const entityTypeId = seed.entityTypeId ?? (() => {
          let x = 1030;
          do x += 2;
          while (store.byEntityTypeId(x));
          return x;
        })();
        const rel = (list?: Array<{ entityTypeId: number; isChildrenListEnabled?: YN | boolean }>) => list?.map((r) => ({ entityTypeId: r.entityTypeId, isChildrenListEnabled: toYN(r.isChildrenListEnabled, 'N') }));
        const t = store.insert(
          {
            id: seed.id,
            title: seed.title,
            code: seed.code ?? '',
            createdBy: seed.createdBy ?? 1,
            entityTypeId,
            customSectionId: seed.customSectionId ?? null,
            flags: Object.fromEntries(ALL_FLAGS.map((f) => [f, toYN(seed[f], f === 'isSetOpenPermissions' ? 'Y' : 'N')])) as Record<FlagName, YN>,
            createdTime: seed.createdTime ?? t0,
            updatedTime: seed.updatedTime ?? seed.createdTime ?? t0,
            updatedBy: seed.createdBy ?? 1,
            linkedUserFields: Object.fromEntries(LINKED_USER_FIELD_KEYS.map((k) => [k, toYN(seed.linkedUserFields?.[k], 'N')])) as Record<LinkedKey, YN>,
            itemCount: seed.itemCount ?? 0,
          },
          { parent: rel(seed.relations?.parent), child: rel(seed.relations?.child) },
        );
        return store.card(t);
      },
      /** Changes a type directly (as an edit inside Bitrix24 would): title/code/flags; updatedTime moves. */
      editType(ref: number | { id?: number; entityTypeId?: number }, patch: { title?: string; code?: string; updatedBy?: number } & Partial<Record<FlagName, YN | boolean>>) {
        const t = typeRef(ref);
        if (patch.title !== undefined) t.title = patch.title;
        if (patch.code !== undefined) t.code = patch.code;
        for (const f of ALL_FLAGS) if (patch[f] !== undefined) t.flags[f] = toYN(patch[f], t.flags[f]);
        t.updatedTime = now();
        t.updatedBy = patch.updatedBy ?? t.updatedBy;
        return store.card(t);
      },
      /** Deletes a type directly (relations touching it go too). */
      deleteType(ref: number | { id?: number; entityTypeId?: number }) {
        store.remove(typeRef(ref));
      },
      /** Gives a type items (crm.type.delete then answers BX_ERROR). */
      setItemCount(ref: number | { id?: number; entityTypeId?: number }, count: number) {
        typeRef(ref).itemCount = count;
      },
      /** Every stored relation edge parent → child. */
      edges() {
        return store.edges.map((e) => ({ ...e }));
      },
      /** Every `customSections` value that reached crm.type.add/update. */
      customSectionsSent: store.customSectionsSent,
      /** What the portal dropped or ignored without an error (relation entries, read-only fields, bad flag spellings…). */
      warnings,
      addUser(u: FakeUser) {
        return { ...addUser(u) };
      },
      user(id: number) {
        const u = users.get(id);
        return u ? { ...u } : undefined;
      },
      /** Changes a user's rights (crmAdmin, canReadTypes, intranet…). */
      setUser(id: number, patch: Partial<FakeUser>) {
        const u = users.get(id);
        if (!u) throw new Error(`fake portal: no user ${id}`);
        addUser({ ...u, ...patch, id });
      },
      /** The leaky bucket now (after draining). */
      bucket() {
        drain();
        return { level: bucket.level, burst: limits?.burst ?? Infinity, perSecond: limits?.perSecond ?? Infinity };
      },
      /** Accumulated operating time of a method for a credential ('webhook:ID' / 'app:CLIENT_ID'), in seconds. */
      operating(method: string, credentialKey: string) {
        return operatingOf(`${credentialKey}|${lower(method)}`);
      },
    },

    /** Every REST call (batch commands too, with inBatch); token endpoint calls are in oauth.calls. */
    calls,
    stats,

    inject: {
      /** A fault for the next `times` calls of a method ('*' = any REST method; 'oauth.token' = the token endpoint, only by name). */
      fault(method: string, fault: Fault, times = 1) {
        faults.push({ method: method === '*' ? '*' : lower(method), fault, remaining: times });
      },
      latency(method: string, ms: number, times = Number.POSITIVE_INFINITY) {
        faults.push({ method: method === '*' ? '*' : lower(method), fault: { kind: 'latency', ms }, remaining: times });
      },
      /** HTTP 500 INTERNAL_SERVER_ERROR. */
      internalError(method: string, times = 1) {
        faults.push({ method: method === '*' ? '*' : lower(method), fault: { kind: 'error', status: 500, error: 'INTERNAL_SERVER_ERROR', description: 'Internal server error' }, remaining: times });
      },
      /** HTTP 503 OVERLOAD_LIMIT (a manual block). */
      overload(method: string, times = 1) {
        faults.push({ method: method === '*' ? '*' : lower(method), fault: { kind: 'error', status: 503, error: 'OVERLOAD_LIMIT', description: 'REST API is blocked due to overload' }, remaining: times });
      },
      /** Any error answer. */
      error(method: string, status: number, error: string | number, description = '', times = 1) {
        faults.push({ method: method === '*' ? '*' : lower(method), fault: { kind: 'error', status, error, description }, remaining: times });
      },
      /** The socket is destroyed before anything is done. */
      drop(method: string, times = 1) {
        faults.push({ method: method === '*' ? '*' : lower(method), fault: { kind: 'drop' }, remaining: times });
      },
      /** The request is never answered (until close()). */
      hang(method: string, times = 1) {
        faults.push({ method: method === '*' ? '*' : lower(method), fault: { kind: 'hang' }, remaining: times });
      },
      /** The call is carried out, then the socket is destroyed: a write that happened but whose answer is lost. */
      /** The call is carried out, then answered 200 with a result of another shape. */
      garbleAnswer(method: string, times = 1) {
        faults.push({ method: method === '*' ? '*' : lower(method), fault: { kind: 'garble-answer' }, remaining: times });
      },
      loseAnswer(method: string, times = 1) {
        faults.push({ method: method === '*' ? '*' : lower(method), fault: { kind: 'lose-answer' }, remaining: times });
      },
      /** The bucket is set to a level (default: full), so the next request gets 503 QUERY_LIMIT_EXCEEDED. */
      fillBucket(level?: number) {
        drain();
        bucket.level = level ?? limits?.burst ?? 0;
      },
      /** A method is over its operating-time limit now (for one credential key, or every credential): 429 until 10 minutes pass. */
      exhaustOperating(method: string, credentialKey?: string) {
        addOperating(`${credentialKey ?? '*'}|${lower(method)}`, operatingLimit + 1);
      },
      /** crm.type.update answers UPDATE_DYNAMIC_TYPE_RESTRICTED while true. */
      set updateRestricted(v: boolean) {
        updateRestricted = v;
      },
      /** Every /rest/ request answers 302 to the same path on another base URL (change-domen.md); null stops it. */
      moveDomain(newBaseUrl: string | null) {
        movedTo = newBaseUrl;
      },
      /** Forgets every pending fault. */
      clear() {
        faults.length = 0;
        movedTo = null;
        updateRestricted = false;
      },
      /** Faults not yet used up. */
      pending() {
        return faults.filter((f) => f.remaining > 0).map((f) => ({ method: f.method, fault: f.fault, remaining: f.remaining }));
      },
    },

    clock: {
      now,
      /** Moves the fake's clock forward (token expiry, code expiry, operating baskets, the bucket). */
      advance(ms: number) {
        clockOffset += ms;
      },
    },

    /** Forgets calls, counters and warnings (not the types, users, tokens). */
    resetRecords() {
      calls.length = 0;
      tokenCalls.length = 0;
      warnings.length = 0;
      Object.assign(stats, emptyStats());
    },

    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
