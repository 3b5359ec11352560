/**
 * A real Bitrix24 portal behind /v1/smart-processes (issue 9 items 2-6), through the
 * native `crm.type.*` methods, answering as a local portal does.
 *
 * Every call: token manager (OAuth; outside the budget, so that the call repeated after a
 * refresh takes its own slot) → the portal's request budget (one per portal, shared by
 * every key and, with Redis, every instance) → the REST client. Reads are repeated after
 * server errors, timeouts and lost answers (with back-off); crm.type.update and
 * crm.type.delete too (idempotent); crm.type.add only when the request certainly never
 * left (network / timeout before sending). After a lost answer of crm.type.add the type
 * is looked up (by the entityTypeId the client chose, else by title and code among the
 * types created since the call started) and the answer comes from what is there; when
 * nothing is found, 502 BITRIX_UNAVAILABLE says the write may have happened.
 *
 * Cache (item 4): the type list (every light item, read through start/next), cards by
 * entityTypeId (a missing type too), and natively filtered list answers, each for
 * `cacheTtlMs` (changes made inside Bitrix24 itself show after at most that). Misses of
 * one key are read once (concurrent callers share the read). Every write through
 * smartproc drops the whole cache of the portal on every instance: the write publishes
 * the portal on the invalidation bus, and the registry builds a new Portal object (the
 * budget, kept by portal id in PortalBudgets, survives that).
 *
 * Writes read the card fresh (not from the cache): If-Match compares with the portal's
 * content (cardVersion), relations are pre-checked against the portal's own types
 * (contract §3.1) and the card the portal answers after the write is compared with the
 * request: an edge it dropped is 422 BITRIX_ERROR naming it.
 */
import type { Redis } from 'ioredis';
import type { InvalidationBus } from '../../access/invalidation.js';
import type { WarnLog } from '../../log-throttle.js';
import type { ListQuery } from '../../domain/list-query.js';
import type { PortalRecord, SessionRecord } from '../../domain/records.js';
import type { TypeCard, TypeRecord } from '../../domain/smart-process-type/card.js';
import type { Changes } from '../../domain/audit.js';
import { edgeChanges, recordChanges, storedEdgesOf, wholeType } from '../../domain/smart-process-type/changes.js';
import { isAllowedEntityTypeId, type TypeDraft, type TypePatch } from '../../domain/smart-process-type/input.js';
import { checkRelations } from '../../domain/smart-process-type/relations.js';
import { ApiError, typeNotFound } from '../../errors.js';
import type { Bitrix24Observer } from '../../observability/metrics.js';
import type { SecretBox, Store } from '../../store/store.js';
import type { WriteWarning } from '../../domain/write-warning.js';
import { checkIfMatch, type Actor, type Portal, type Readiness, type RequestContext, type Settled, type SmartProcessTypes, type WriteOptions } from '../portal.js';
import { DEFAULT_BUDGET_LIMITS, type PortalBudget, type PortalBudgets } from './budget.js';
import { mapBitrix24Failure } from './error-mapping.js';
import { compareRecords, finishReadAll, matchesCondition, planPages, toNativeList } from './native-filter.js';
import {
  cardVersion,
  compareRelations,
  expectedAfterAdd,
  expectedAfterPatch,
  flagsAfterPatch,
  fromNativeCard,
  fromNativeListItem,
  ignoredLinkedUserFields,
  ignoredLinkedUserFieldsError,
  NATIVE_UNWRITABLE_FLAGS,
  NativeShapeError,
  notKeptWarnings,
  patchChangesCard,
  relationsToSend,
  toNativeAddFields,
  toNativeUpdateFields,
  typeOfResult,
  typesOfListResult,
  unkeptFields,
  type ExpectedScalars,
  unwritableFlagChanges,
  unwritableFlagsError,
} from './native-mapping.js';
import { NeedsAuthorizationError, OAuthError, RedisRefreshLock, TokenManager } from './oauth.js';
import { SealedCredentialStore, restClientOf, unseal } from './portal-credentials.js';
import type { RelationsChange } from '../../domain/smart-process-type/relations.js';
import { Bitrix24Error, Bitrix24RestClient, MAX_BATCH_COMMANDS, type BatchCommand, type BatchResult, type CallOptions, type CallResult } from './rest-client.js';
import { RedisWriteLock } from './write-lock.js';
import { UserTokenStore } from './user-authorization.js';

export interface Bitrix24PortalDeps {
  store: Store;
  box: () => SecretBox;
  budgets: PortalBudgets;
  bus: InvalidationBus;
  redis: Redis | null;
  /** How long reads are served from the cache (ms); 0 = no cache. */
  cacheTtlMs: number;
  /** Per-call timeout (ms). */
  callTimeoutMs: number;
  /** Warnings that no request answers (a refused client_endpoint, a write lock without Redis); never with a secret. */
  log?: WarnLog;
  /** Told of calls, failures, budget waits and cache lookups (GET /metrics); none in some tests. */
  observer?: Bitrix24Observer;
}

/**
 * Writes of one portal run one at a time in this server (its deps object): Bitrix24 has no
 * conditional update, so If-Match, the code uniqueness check and the relation pre-check
 * hold only if no other write slips between the fresh read and the write. Across instances
 * the write lock in Redis does the same per type (write-lock.ts; docs/bitrix24.md).
 * Keyed by portal id: the Portal object is rebuilt after every write.
 */
const writeQueuesOf = new WeakMap<object, Map<number, Promise<unknown>>>();

function serialized<T>(server: object, portalId: number, work: () => Promise<T>): Promise<T> {
  let writeQueues = writeQueuesOf.get(server);
  if (!writeQueues) writeQueuesOf.set(server, (writeQueues = new Map()));
  const queues = writeQueues;
  const previous = queues.get(portalId) ?? Promise.resolve();
  const run = previous.then(work, work);
  const tail = run.catch(() => {});
  queues.set(portalId, tail);
  void tail.then(() => {
    if (queues.get(portalId) === tail) queues.delete(portalId);
  });
  return run;
}

/**
 * The budget's name (its Redis key): the Bitrix24 portal itself (its domain), whose bucket
 * it mirrors, not the portal id, which is only unique within one store: two deployments
 * (or test stores) sharing one Redis would otherwise share a budget (and a refresh lock)
 * between different Bitrix24 portals.
 */
export const budgetNameOf = (record: Pick<PortalRecord, 'id' | 'domain'>): string => (record.domain ? `domain:${record.domain}` : `portal:${record.id}`);

/**
 * Cache figures of this process (the load spec reports them), one count per look-up:
 * `hits` answered from a stored value (no native call), `joined` waited for a load another
 * request had started (no native call of its own, but not from the cache), `misses`
 * started a load (native calls).
 */
export const bitrix24CacheStats = { hits: 0, joined: 0, misses: 0 };

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const RETRYABLE = new Set(['server', 'network', 'timeout', 'answer_lost']);
const NOT_SENT = new Set(['network', 'timeout']);
const MAX_TRIES = 3;

type Retry = 'read' | 'idempotent' | 'never';

interface Connection {
  client: Bitrix24RestClient;
  tokens: TokenManager | null;
}

/** A small TTL cache whose misses are loaded once; `clear()` also keeps loads that started before it from being stored. */
class PortalCache {
  private readonly values = new Map<string, { value: unknown; expires: number }>();
  private readonly loading = new Map<string, Promise<unknown>>();
  private generation = 0;

  constructor(private readonly ttlMs: number, private readonly onLookup: (hit: boolean) => void = () => {}) {}

  /** A stored value, or undefined; a value found counts as a hit (a miss is counted by the get() that follows it). */
  peek<T>(key: string): T | undefined {
    const entry = this.values.get(key);
    if (entry && entry.expires > Date.now()) {
      bitrix24CacheStats.hits++;
      this.onLookup(true);
      return entry.value as T;
    }
    return undefined;
  }

  async get<T>(key: string, load: () => Promise<T>): Promise<T> {
    const hit = this.peek<T>(key);
    if (hit !== undefined) return hit;
    const pending = this.loading.get(key);
    if (pending) {
      bitrix24CacheStats.joined++;
      this.onLookup(true);
      return pending as Promise<T>;
    }
    bitrix24CacheStats.misses++;
    this.onLookup(false);
    const generation = this.generation;
    const promise = load().then(
      (value) => {
        if (this.generation === generation) {
          this.loading.delete(key);
          if (this.ttlMs > 0) this.values.set(key, { value, expires: Date.now() + this.ttlMs });
        }
        return value;
      },
      (error: unknown) => {
        if (this.generation === generation) this.loading.delete(key);
        throw error;
      },
    );
    this.loading.set(key, promise);
    return promise;
  }

  /** A stamp to pass to `put`: a value read after it is stored only if no `clear()` came between. */
  get stamp(): number {
    return this.generation;
  }

  /** Stores a value read outside `get` (the cards of a native batch). */
  put(key: string, value: unknown, stamp: number): void {
    if (this.generation === stamp && this.ttlMs > 0) this.values.set(key, { value, expires: Date.now() + this.ttlMs });
  }

  clear(): void {
    this.generation++;
    this.values.clear();
    this.loading.clear();
  }
}

/** The write lock across instances of a server (its deps object), when it has Redis. */
const writeLocks = new WeakMap<Bitrix24PortalDeps, RedisWriteLock>();

/** The token managers of a server (its deps object), by portal id and credential identity: one per credential per process. */
const tokenManagers = new WeakMap<Bitrix24PortalDeps, Map<string, TokenManager>>();

/** The user a session's calls run as, with the user's own tokens (user authorization, issue 10). */
export interface SessionUserAuth {
  sessionId: string;
  userId: number;
}

/** Token managers of sessions' user tokens kept per process (the oldest are dropped first; a dropped one is rebuilt from the store). */
const MAX_SESSION_TOKEN_MANAGERS = 10_000;

/** A revoked session's token manager is dropped (the session's row is gone; its tokens must not stay in memory). */
export function forgetSessionTokens(deps: Bitrix24PortalDeps, sessionId: string): void {
  tokenManagers.get(deps)?.delete(`session:${sessionId}`);
}

/** User views kept per portal object (it is rebuilt on every change of the portal): at most this many. */
const MAX_USER_VIEWS = 1000;

export class Bitrix24Portal implements Portal {
  readonly types: Bitrix24Types;
  /** Set when this object learned that the refresh token died. */
  needsAuthorization = false;
  private readonly userViews = new Map<string, Bitrix24Portal>();

  constructor(readonly record: PortalRecord, private readonly deps: Bitrix24PortalDeps, readonly user: SessionUserAuth | null = null) {
    this.types = new Bitrix24Types(this, deps, user);
  }

  /** Calls of a session with the user's own Bitrix24 tokens run with them (and past the portal's cache: the user's rights apply). */
  forSession(session: SessionRecord): Portal {
    if (!session.bitrix24Tokens || this.user) return this;
    let view = this.userViews.get(session.id);
    if (!view) {
      if (this.userViews.size >= MAX_USER_VIEWS) this.userViews.delete(this.userViews.keys().next().value!);
      view = new Bitrix24Portal(this.record, this.deps, { sessionId: session.id, userId: session.userId });
      this.userViews.set(session.id, view);
    }
    return view;
  }

  readiness(): Readiness {
    if (!this.record.bitrix24) {
      return { ready: false, message: 'The API key has no configured tokens', hint: 'The portal has no credentials: PATCH /v1/portals/:id with webhookUrl or oauth.' };
    }
    if (this.record.bitrix24.needsAuthorization || this.needsAuthorization) {
      return {
        ready: false,
        message: "The portal's OAuth authorization has expired (its refresh token was refused)",
        hint: 'Authorize the application on the portal again and store the new tokens: PATCH /v1/portals/:id with oauth {...}.',
      };
    }
    return { ready: true };
  }
}

export class Bitrix24Types implements SmartProcessTypes {
  private readonly record: PortalRecord;
  private readonly budget: PortalBudget;
  private readonly cache: PortalCache;
  private connection: Promise<Connection> | null = null;

  constructor(private readonly portal: Bitrix24Portal, private readonly deps: Bitrix24PortalDeps, private readonly user: SessionUserAuth | null = null) {
    this.record = portal.record;
    this.budget = deps.budgets.get(budgetNameOf(this.record), this.record.bitrix24?.limits ?? DEFAULT_BUDGET_LIMITS);
    const { observer } = deps;
    const portalId = this.record.id;
    // A user's view reads through to the portal every time: Bitrix24 applies that user's rights.
    this.cache = new PortalCache(user ? 0 : deps.cacheTtlMs, observer ? (hit) => observer.cache(portalId, hit) : undefined);
  }

  /** A session's connection: the user's own tokens (bitrix24_user_tokens), refreshed single-flight like the portal's. */
  private async connectUser(user: SessionUserAuth): Promise<Connection> {
    const { store, box, redis } = this.deps;
    let managers = tokenManagers.get(this.deps);
    if (!managers) tokenManagers.set(this.deps, (managers = new Map()));
    const key = `session:${user.sessionId}`;
    let tokens = managers.get(key);
    if (!tokens) {
      // Sessions come and go (24 h): keep the managers of the most recent ones only.
      if (managers.size >= MAX_SESSION_TOKEN_MANAGERS) {
        const oldest = [...managers.keys()].find((k) => k.startsWith('session:'));
        if (oldest) managers.delete(oldest);
      }
      tokens = new TokenManager({
        store: new UserTokenStore(store, box(), user.sessionId),
        lock: redis ? new RedisRefreshLock(redis) : null,
        lockName: `${budgetNameOf(this.record)}:session:${user.sessionId}`,
      });
      managers.set(key, tokens);
    }
    // Refreshes go to the token URL the user's credential carries (the portal application's).
    const credential = await tokens.current();
    return { client: Bitrix24RestClient.oauth(credential.clientEndpoint, { timeoutMs: this.deps.callTimeoutMs }), tokens };
  }

  // ------------------------------------------------------------------ transport

  private connect(): Promise<Connection> {
    this.connection ??= (async () => {
      if (this.user) return this.connectUser(this.user);
      const { store, box, redis } = this.deps;
      const row = await store.read.bitrix24.get(this.record.id);
      if (!row) throw new ApiError('TOKEN_MISSING', 'The API key has no configured tokens', { hint: 'PATCH /v1/portals/:id with webhookUrl or oauth.' });
      let credential;
      try {
        credential = unseal(box(), this.record.id, row.sealed);
      } catch {
        throw new ApiError('TOKEN_MISSING', "The portal's credentials cannot be read with this server's secret key", { hint: 'Restore the secret key (SMARTPROC_SECRET_KEY or DATA_DIR/secret.key) the credentials were stored with, or PATCH /v1/portals/:id with new credentials.' });
      }
      const client = restClientOf(credential, { timeoutMs: this.deps.callTimeoutMs });
      if (credential.type === 'webhook') return { client, tokens: null };
      // One token manager per credential per process, kept across Portal objects (every write rebuilds the
      // Portal object while requests on the old one may still run): two managers would refresh twice.
      let managers = tokenManagers.get(this.deps);
      if (!managers) tokenManagers.set(this.deps, (managers = new Map()));
      const key = JSON.stringify([this.record.id, credential.clientId, credential.clientEndpoint, credential.tokenUrl ?? null]);
      let tokens = managers.get(key);
      if (tokens) {
        tokens.reload(); // the stored credential may have been replaced (PATCH): read it again
      } else {
        const portalId = this.record.id;
        const bus = this.deps.bus;
        const credentials = new SealedCredentialStore(store, box(), portalId, () => {
          void bus.publish({ type: 'portal', id: portalId });
        });
        const log = this.deps.log;
        const domain = this.record.domain;
        tokens = new TokenManager({
          store: credentials,
          lock: redis ? new RedisRefreshLock(redis) : null,
          lockName: `${budgetNameOf(this.record)}:portal:${portalId}`,
          token: { tokenUrl: credential.tokenUrl },
          onEndpointRefused: (reason) => log?.warn({ portalId, domain }, `bitrix24 OAuth refresh: ${reason}`),
        });
        managers.set(key, tokens);
      }
      return { client, tokens };
    })();
    this.connection.catch(() => {
      this.connection = null;
    });
    return this.connection;
  }

  /** The request's deadline for every wait of its native calls (one bound per client request, not per call). */
  private deadlineOf(context: RequestContext | undefined): number | undefined {
    return context ? context.startedAt + this.budget.maxWaitMs : undefined;
  }

  /** One native request: token manager → budget (inside the request's deadline) → client; repeated per `retry` with back-off. */
  private async send<T>(method: string, request: (client: Bitrix24RestClient, options: CallOptions) => Promise<T>, retry: Retry, context?: RequestContext): Promise<T> {
    const { client, tokens } = await this.connect();
    const run = { deadline: this.deadlineOf(context) };
    const once = () => (tokens ? tokens.withToken((auth) => this.observed(method, () => request(client, { auth }), run)) : this.observed(method, () => request(client, {}), run));
    return this.tries(once, retry, run.deadline);
  }

  /** One method call. */
  private call<T>(method: string, params: Record<string, unknown>, retry: Retry, context?: RequestContext): Promise<CallResult<T>> {
    return this.send(method, (client, options) => client.call<T>(method, params, options), retry, context);
  }

  /** Read commands in one native `batch` call (one request for the portal's limit and our budget); repeated like a read. */
  private batchRead(commands: Record<string, BatchCommand>, context?: RequestContext): Promise<BatchResult> {
    return this.send('batch', (client, options) => client.batch(commands, false, options), 'read', context);
  }

  private async tries<T>(once: () => Promise<T>, retry: Retry, deadline: number | undefined): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await once();
      } catch (error) {
        if (error instanceof NeedsAuthorizationError && !this.user) this.portal.needsAuthorization = true;
        if (!(error instanceof Bitrix24Error) || attempt >= MAX_TRIES) throw error;
        const again = retry === 'never' ? NOT_SENT.has(error.kind) : RETRYABLE.has(error.kind);
        if (!again) throw error;
        const backoff = 150 * 2 ** (attempt - 1) * (0.5 + Math.random() / 2);
        if (deadline !== undefined && Date.now() + backoff >= deadline) throw error; // no time left in this request
        await sleep(backoff);
      }
    }
  }

  /** One call inside the portal's budget, told to the observer: queue length and wait, the call, its failure. */
  private observed<T>(method: string, fn: () => Promise<T>, run: Parameters<PortalBudget['run']>[2]): Promise<T> {
    const observer = this.deps.observer;
    if (!observer) return this.budget.run(method, fn, run);
    const portalId = this.record.id;
    const entered = performance.now();
    let waiting = true;
    observer.queued(portalId, 1);
    const stopWaiting = () => {
      if (!waiting) return false;
      waiting = false;
      observer.queued(portalId, -1);
      return true;
    };
    const counted = async () => {
      if (stopWaiting()) observer.waited(portalId, (performance.now() - entered) / 1000);
      observer.call(portalId, method);
      try {
        return await fn();
      } catch (error) {
        if (error instanceof Bitrix24Error) observer.error(portalId, method, error.kind);
        throw error;
      }
    };
    return this.budget
      .run(method, counted, run)
      .catch((error: unknown) => {
        if (error instanceof ApiError && error.code === 'QUEUE_TIMEOUT') observer.error(portalId, method, 'queue_timeout');
        throw error;
      })
      .finally(stopWaiting);
  }

  private fail(error: unknown, context: { entityTypeId?: number; write?: boolean } = {}): unknown {
    if (this.user && isUserAuthorizationFailure(error)) {
      const what = error instanceof Bitrix24Error ? `Bitrix24 ${error.method} answered ${String(error.code)}` : `the authorization server answered ${(error as OAuthError).code}`;
      return new ApiError('TOKEN_EXPIRED', `Bitrix24 no longer accepts the authorization of user ${this.user.userId} behind this session (${what})`, {
        hint: 'The user must authorize the application again: GET /v1/oauth/authorize?app_key=...&state=..., then use the new session.',
      });
    }
    if (error instanceof NativeShapeError) {
      return new ApiError('BITRIX_UNAVAILABLE', `The portal answered in an unexpected shape (${error.message})${context.write ? '; the write may or may not have happened' : ''}`, { hint: context.write ? 'Check the current state (GET) before retrying the write.' : 'Retry shortly.' });
    }
    return mapBitrix24Failure(error, context);
  }

  /** Drops this portal's cache here and, through the bus, on every instance. */
  private async invalidate(): Promise<void> {
    this.cache.clear();
    await this.deps.bus.publish({ type: 'portal', id: this.record.id });
  }

  private get timeZone() {
    return { timeZone: this.record.timeZone };
  }

  /** The flags the native API cannot set (the adapter refuses a change of one): /fields shows them read-only. */
  get readOnlyFlags(): readonly string[] {
    return NATIVE_UNWRITABLE_FLAGS;
  }

  // ------------------------------------------------------------------ reads

  /** The portal's types (every light item, through start/next); cached, or `fresh` for the pre-checks of a write (never from the cache). */
  private allTypes(options: { fresh?: boolean; context?: RequestContext } = {}): Promise<TypeRecord[]> {
    const order = { id: 'ASC' };
    const records = (result: unknown) => typesOfListResult(result).map((t) => fromNativeListItem(t, this.timeZone));
    const read = async () => {
      const first: CallResult<unknown> = await this.call<unknown>('crm.type.list', { order, start: 0 }, 'read', options.context);
      const all = records(first.result);
      let next = typeof first.next === 'number' && first.next > 0 ? first.next : undefined;
      // The pages after the first, known from `total`, in native batch calls of up to 50 pages:
      // one request each instead of one a page. A page that failed or is missing, and pages of
      // types added meanwhile (the last page has a `next`), are read one by one below.
      const pageSize = next;
      while (next !== undefined && pageSize && first.total !== undefined && next < first.total) {
        const starts: number[] = [];
        for (let start = next; start < first.total && starts.length < MAX_BATCH_COMMANDS; start += pageSize) starts.push(start);
        const answer = await this.batchRead(Object.fromEntries(starts.map((start) => [`p${start}`, { method: 'crm.type.list', params: { order, start } }])), options.context);
        let complete = true;
        for (const start of starts) {
          const key = `p${start}`;
          if (answer.errors[key] || !(key in answer.result)) {
            next = start;
            complete = false;
            break;
          }
          all.push(...records(answer.result[key]));
        }
        if (!complete) break;
        const last = starts[starts.length - 1];
        const after = answer.next[`p${last}`];
        next = typeof after === 'number' && after > last ? after : undefined;
      }
      for (let start = next; start !== undefined; ) {
        const page: CallResult<unknown> = await this.call<unknown>('crm.type.list', { order, start }, 'read', options.context);
        all.push(...records(page.result));
        start = typeof page.next === 'number' && page.next > start ? page.next : undefined;
      }
      return all;
    };
    return options.fresh ? read() : this.cache.get('all', read);
  }

  async list(query: ListQuery, context?: RequestContext): Promise<{ records: TypeRecord[]; total: number }> {
    try {
      const plan = toNativeList(query);
      if (plan.matchesNothing) return { records: [], total: 0 };
      const all = this.cache.peek<TypeRecord[]>('all');
      // The whole list at hand (or nothing to filter): answer from it, with the local store's semantics.
      if (all || query.conditions.length === 0) return inMemory(all ?? (await this.allTypes({ context })), query);
      const key = `q:${JSON.stringify([plan.filter, plan.order, plan.readAll ? null : [query.offset, query.limit]])}`;
      const answer = await this.cache.get(key, () => this.nativeList(plan, query, context));
      return plan.readAll ? finishReadAll(answer.records, plan, query) : answer;
    } catch (error) {
      throw this.fail(error);
    }
  }

  /** A filtered list through crm.type.list: the native filter and order, pages through start/next; readAll plans return every matching record. */
  private async nativeList(plan: ReturnType<typeof toNativeList>, query: ListQuery, context?: RequestContext): Promise<{ records: TypeRecord[]; total: number }> {
    const page = async (start: number) => {
      const answer = await this.call<unknown>('crm.type.list', { order: plan.order, filter: plan.filter, start }, 'read', context);
      return { records: typesOfListResult(answer.result).map((t) => fromNativeListItem(t, this.timeZone)), total: Number(answer.total ?? 0), next: answer.next };
    };
    if (plan.readAll) {
      const all: TypeRecord[] = [];
      for (let start: number | undefined = 0; start !== undefined; ) {
        const p = await page(start);
        all.push(...p.records);
        start = typeof p.next === 'number' && p.next > start ? p.next : undefined;
      }
      return { records: all, total: all.length };
    }
    const { starts, skip } = planPages(query.offset, query.limit);
    const records: TypeRecord[] = [];
    let total = 0;
    for (const [i, start] of starts.entries()) {
      const p = await page(start);
      if (i === 0) total = p.total;
      records.push(...p.records);
      if (p.next === undefined) break;
    }
    return { records: records.slice(skip, skip + query.limit), total };
  }

  /** A card by getByEntityTypeId or get; null when the portal answers "not found". */
  private cardBy(method: 'crm.type.getByEntityTypeId' | 'crm.type.get', params: Record<string, number>, context?: RequestContext): Promise<TypeCard | null> {
    return this.call<unknown>(method, params, 'read', context).then(
      (answer) => fromNativeCard(typeOfResult(answer.result), this.timeZone),
      (error: unknown) => {
        if (error instanceof Bitrix24Error && error.kind === 'not_found') return null;
        throw error;
      },
    );
  }

  private readCard(entityTypeId: number, context?: RequestContext): Promise<TypeCard | null> {
    return this.cardBy('crm.type.getByEntityTypeId', { entityTypeId }, context);
  }

  /** crm.type.get by the type's own id: the read-back after a write (a separate call: the write's own answer may not reflect relations). */
  private readCardById(id: number, context?: RequestContext): Promise<TypeCard | null> {
    return this.cardBy('crm.type.get', { id }, context);
  }

  async get(entityTypeId: number, context?: RequestContext): Promise<TypeCard | null> {
    try {
      return await this.cache.get(`card:${entityTypeId}`, () => this.readCard(entityTypeId, context));
    } catch (error) {
      throw this.fail(error, { entityTypeId });
    }
  }

  async has(entityTypeId: number, context?: RequestContext): Promise<boolean> {
    return (await this.get(entityTypeId, context)) !== null;
  }

  /**
   * Several cards at once (the reads of a batch): from the cache where it has them, the
   * others through native `batch` calls of crm.type.getByEntityTypeId, 50 commands each
   * (one request for the portal's limit and for our budget, instead of one per card). A
   * command that failed for a reason worth repeating (server error, time limit) is read
   * again alone, with the repetitions of a single read.
   */
  async getMany(entityTypeIds: number[]): Promise<Map<number, Settled<TypeCard | null>>> {
    const out = new Map<number, Settled<TypeCard | null>>();
    const missing: number[] = [];
    for (const id of new Set(entityTypeIds)) {
      const hit = this.cache.peek<TypeCard | null>(`card:${id}`);
      // peek counts the hit.
      if (hit === undefined) missing.push(id);
      else out.set(id, { ok: true, value: hit });
    }
    const alone = async (id: number) => {
      try {
        out.set(id, { ok: true, value: await this.get(id) });
      } catch (error) {
        out.set(id, { ok: false, error });
      }
    };
    if (missing.length === 1) await alone(missing[0]);
    if (missing.length < 2) return out;
    for (let from = 0; from < missing.length; from += MAX_BATCH_COMMANDS) {
      const chunk = missing.slice(from, from + MAX_BATCH_COMMANDS);
      const stamp = this.cache.stamp;
      bitrix24CacheStats.misses += chunk.length;
      if (this.deps.observer) for (let i = 0; i < chunk.length; i++) this.deps.observer.cache(this.record.id, false);
      let answer: BatchResult;
      try {
        answer = await this.batchRead(Object.fromEntries(chunk.map((id) => [`c${id}`, { method: 'crm.type.getByEntityTypeId', params: { entityTypeId: id } }])));
      } catch (error) {
        const failure = this.fail(error);
        for (const id of chunk) out.set(id, { ok: false, error: failure });
        continue;
      }
      const again: number[] = [];
      for (const id of chunk) {
        const key = `c${id}`;
        const failure = answer.errors[key];
        try {
          if (failure) {
            if (failure.kind !== 'not_found') {
              if (RETRYABLE.has(failure.kind) || failure.kind === 'operation_time_limit' || failure.kind === 'query_limit') again.push(id);
              else out.set(id, { ok: false, error: this.fail(failure, { entityTypeId: id }) });
              continue;
            }
            this.cache.put(`card:${id}`, null, stamp);
            out.set(id, { ok: true, value: null });
            continue;
          }
          if (!(key in answer.result)) {
            again.push(id);
            continue;
          }
          const card = fromNativeCard(typeOfResult(answer.result[key]), this.timeZone);
          this.cache.put(`card:${id}`, card, stamp);
          out.set(id, { ok: true, value: card });
        } catch (error) {
          out.set(id, { ok: false, error: this.fail(error, { entityTypeId: id }) });
        }
      }
      for (const id of again) await alone(id);
    }
    return out;
  }

  /**
   * Several list queries at once (the reads of a batch): two or more are answered from one
   * read of the whole type list (cached, or read once), with the local store's semantics,
   * as `list` does whenever the whole list is at hand.
   */
  async listMany(queries: ListQuery[]): Promise<Settled<{ records: TypeRecord[]; total: number }>[]> {
    const one = async (query: ListQuery): Promise<Settled<{ records: TypeRecord[]; total: number }>> => {
      try {
        return { ok: true, value: await this.list(query) };
      } catch (error) {
        return { ok: false, error };
      }
    };
    if (queries.length < 2) return Promise.all(queries.map(one));
    let all: TypeRecord[];
    try {
      all = await this.allTypes();
    } catch (error) {
      const failure = this.fail(error);
      return queries.map(() => ({ ok: false, error: failure }));
    }
    return queries.map((query) => {
      try {
        return { ok: true, value: toNativeList(query).matchesNothing ? { records: [], total: 0 } : inMemory(all, query) };
      } catch (error) {
        return { ok: false, error: this.fail(error) };
      }
    });
  }

  // ------------------------------------------------------------------ writes

  private portalTypeIds(all: TypeRecord[]): Set<number> {
    return new Set(all.map((r) => r.entityTypeId));
  }

  private assertCodeFree(all: TypeRecord[], code: string | null, self: number | null): void {
    if (code === null) return;
    const holder = all.find((r) => r.code === code && r.entityTypeId !== self);
    if (holder) {
      throw new ApiError('BITRIX_ERROR', `code "${code}" is already used by the smart process with entityTypeId=${holder.entityTypeId} ("${holder.title}")`, {
        details: [{ location: 'body.code', message: `already used by entityTypeId=${holder.entityTypeId}`, fix: 'choose another code, or clear it on the other type first' }],
      });
    }
  }

  create(draft: TypeDraft, actor: Actor, options: WriteOptions = {}): Promise<TypeCard> {
    // Creates queue across instances too: the code and entityTypeId checks, and the look-up after a lost answer ("not there before the call"), assume no other create runs meanwhile.
    return serialized(this.deps, this.record.id, () => this.locked('create', options.context, () => this.createNow(draft, actor, options.context)));
  }

  update(entityTypeId: number, patch: TypePatch, actor: Actor, options: WriteOptions = {}): Promise<TypeCard> {
    return serialized(this.deps, this.record.id, () => this.locked(entityTypeId, options.context, () => this.updateNow(entityTypeId, patch, actor, options)));
  }

  delete(entityTypeId: number, actor: Actor, options: WriteOptions = {}): Promise<void> {
    return serialized(this.deps, this.record.id, () => this.locked(entityTypeId, options.context, () => this.deleteNow(entityTypeId, actor, options)));
  }

  /**
   * Runs a check-and-write of one type under the write lock across instances (Redis;
   * write-lock.ts), so that If-Match and the pre-checks hold against other instances too;
   * without Redis as it is (this instance's queue still holds). Waits within the request's deadline.
   */
  private locked<T>(what: number | 'create', context: RequestContext | undefined, work: () => Promise<T>): Promise<T> {
    const { redis } = this.deps;
    if (!redis) return work();
    let lock = writeLocks.get(this.deps);
    if (!lock) writeLocks.set(this.deps, (lock = new RedisWriteLock(redis, { log: this.deps.log })));
    const deadline = this.deadlineOf(context) ?? Date.now() + this.budget.maxWaitMs;
    return lock.run(`${budgetNameOf(this.record)}:${what === 'create' ? 'create' : `type:${what}`}`, deadline, work);
  }

  /**
   * The audit entry of a change made on the portal. Bitrix24 holds the type, so the change
   * and its entry cannot share a transaction: the entry is written once the upstream write
   * has succeeded (also when the portal then turns out not to have kept every field: the
   * change happened). If the store cannot take it, the change stays made and answered as
   * such (failing the request would invite a client to repeat a write that was done); the
   * server log says which entry was lost.
   */
  private async audit(actor: Actor, entityTypeId: number, action: 'create' | 'update' | 'delete', changes: Changes): Promise<void> {
    if (!Object.keys(changes).length) return;
    const entry = { at: Date.now(), portalId: this.record.id, resource: 'type' as const, resourceId: String(entityTypeId), action, context: actor.audit, changes };
    try {
      await this.deps.store.write(({ repos }) => repos.audit.record(entry));
    } catch (error) {
      this.deps.store.log.warn({ err: error, audit: { portalId: entry.portalId, entityTypeId, action, requestId: actor.audit.requestId } }, 'bitrix24: the change was made on the portal, but its audit entry could not be stored');
    }
  }

  private async createNow(draft: TypeDraft, actor: Actor, context?: RequestContext): Promise<TypeCard> {
    let written: { card: TypeCard; readBack: boolean };
    try {
      const unwritable = unwritableFlagChanges(draft, null);
      if (unwritable.length) throw unwritableFlagsError(unwritable);
      const ignored = ignoredLinkedUserFields(draft, null);
      if (ignored.length) throw ignoredLinkedUserFieldsError(ignored);
      // Rules checked before the call, against the portal's own types (fresh: a write must not trust the cache).
      const all = await this.allTypes({ fresh: true, context });
      if (draft.entityTypeId !== null) {
        if (!isAllowedEntityTypeId(draft.entityTypeId)) {
          throw new ApiError('BITRIX_ERROR', 'entityTypeId is out of allowed range', { hint: 'Use 128..191 or an even number ≥ 1030, or omit entityTypeId to have one allocated.', details: [{ location: 'body.entityTypeId', message: 'out of allowed range' }] });
        }
        if (all.some((r) => r.entityTypeId === draft.entityTypeId)) throw new ApiError('BITRIX_ERROR', `entityTypeId ${draft.entityTypeId} is already used`);
      }
      this.assertCodeFree(all, draft.code, null);
      checkRelations(draft.relations, draft.flags, draft.entityTypeId ?? 0, this.portalTypeIds(all));

      const started = Date.now();
      try {
        const answer = await this.call<unknown>('crm.type.add', { fields: toNativeAddFields(draft) }, 'never', context);
        written = { card: fromNativeCard(typeOfResult(answer.result), this.timeZone), readBack: false };
      } catch (error) {
        // Lost, failed on the server, or answered in a shape we cannot read: the type may exist; look it up, never add again.
        if (!(error instanceof Bitrix24Error && (error.kind === 'answer_lost' || error.kind === 'server')) && !(error instanceof NativeShapeError)) throw error;
        // Found by a separate read: that read is the read-back.
        written = { card: await this.recoverAdd(draft, started, new Set(all.map((r) => r.id)), error, context), readBack: true };
      } finally {
        await this.invalidate();
      }
    } catch (error) {
      throw this.fail(error, { write: true });
    }
    // The type exists now: whatever the read-back finds, the answer is 201 (never a 4xx for a write that happened).
    const card = await this.readBack(written, { relations: draft.relations, scalars: expectedAfterAdd(draft) }, context);
    await this.audit(actor, card.record.entityTypeId, 'create', wholeType(card.record, storedEdgesOf(card), 'after'));
    return card;
  }

  /**
   * The card after a write, as the portal holds it: read with a separate crm.type.get (the
   * write's own answer may not reflect relations; bitrix24.md), inside the request's
   * deadline, and compared with what was asked. What was not kept is answered as
   * `warnings` (notApplied); a read-back that fails answers the write's own card with an
   * `unverified` warning. Never throws: the write has happened.
   */
  private async readBack(written: { card: TypeCard; readBack: boolean }, expected: { relations?: RelationsChange; scalars: ExpectedScalars }, context?: RequestContext): Promise<TypeCard> {
    let card = written.card;
    const warnings: WriteWarning[] = [];
    if (!written.readBack) {
      try {
        const read = await this.readCardById(written.card.record.id, context);
        if (read) card = read;
        else warnings.push({ kind: 'unverified', location: 'body', message: 'the type was not found when read back right after the write (deleted meanwhile?); the card is the write\'s own answer', fix: 'GET the card to see what the portal holds now' });
      } catch (error) {
        const mapped = this.fail(error);
        const why = mapped instanceof ApiError ? `${mapped.code}: ${mapped.message}` : 'an unexpected failure';
        warnings.push({ kind: 'unverified', location: 'body', message: `the write was carried out, but the card could not be read back (${why}); the card is the write's own answer, which may not show relations`, fix: 'GET the card to see what the portal holds now' });
      }
    }
    const mismatches = expected.relations ? compareRelations(expected.relations, card) : [];
    const fields = unkeptFields(expected.scalars, card);
    // An unverified card is the write's own answer: its relations prove nothing either way.
    warnings.push(...notKeptWarnings(warnings.length ? [] : mismatches, fields));
    return warnings.length ? { ...card, warnings } : card;
  }

  /**
   * crm.type.add may have happened though its answer was lost: never sent again blindly.
   * The type is looked up (by the chosen entityTypeId, else a title/code match that was not
   * there before the call and was created since it started) and answered from; else 502.
   */
  private async recoverAdd(draft: TypeDraft, started: number, before: Set<number>, cause: Bitrix24Error | NativeShapeError, context?: RequestContext): Promise<TypeCard> {
    const why = cause instanceof Bitrix24Error ? String(cause.code) : `an answer of an unexpected shape: ${cause.message}`;
    const unknown = (extra: string) =>
      new ApiError('BITRIX_UNAVAILABLE', `The portal did not answer crm.type.add (${why}); the type may or may not have been created${extra}`, {
        hint: 'List the types (GET /v1/smart-processes) before creating it again.',
      });
    try {
      if (draft.entityTypeId !== null) {
        const card = await this.readCard(draft.entityTypeId, context);
        if (card && card.record.title === draft.title) return card;
        throw unknown(': no type with that entityTypeId was found yet');
      }
      const since = Math.floor(started / 1000) - 60; // the portal's clock may differ from ours
      const answer = await this.call<unknown>('crm.type.list', { order: { id: 'DESC' }, filter: { title: draft.title } }, 'read', context);
      const candidates = typesOfListResult(answer.result)
        .map((t) => fromNativeListItem(t, this.timeZone))
        .filter((r) => r.title === draft.title && r.code === draft.code && !before.has(r.id) && r.createdTime >= since);
      if (candidates.length !== 1) throw unknown(candidates.length ? `: ${candidates.length} matching types were found (entityTypeId ${candidates.map((c) => c.entityTypeId).join(', ')})` : ': none was found yet');
      const card = await this.readCard(candidates[0].entityTypeId, context);
      if (!card) throw unknown(': it disappeared while being read');
      return card;
    } catch (error) {
      if (error instanceof ApiError) throw error;
      throw unknown(': looking it up failed too');
    }
  }

  private async updateNow(entityTypeId: number, patch: TypePatch, actor: Actor, options: WriteOptions): Promise<TypeCard> {
    const context = options.context;
    let written: { card: TypeCard; readBack: boolean };
    let requested: RelationsChange | undefined;
    let scalars: ExpectedScalars;
    let before: TypeCard;
    try {
      const current = await this.readCard(entityTypeId, context);
      if (!current) throw typeNotFound(entityTypeId);
      before = current;
      assertVersion(current, options);
      const unwritable = unwritableFlagChanges(patch, current);
      if (unwritable.length) throw unwritableFlagsError(unwritable);
      const ignored = ignoredLinkedUserFields(patch, current);
      if (ignored.length) throw ignoredLinkedUserFieldsError(ignored);
      if (patch.code !== undefined || patch.relations) {
        // Against the portal's own types, fresh: a write must not trust the cache (as createNow).
        const all = await this.allTypes({ fresh: true, context });
        if (patch.code !== undefined && patch.code !== current.record.code) this.assertCodeFree(all, patch.code, entityTypeId);
        if (patch.relations) checkRelations(patch.relations, flagsAfterPatch(patch, current.record.flags), entityTypeId, this.portalTypeIds(all));
      }
      if (!patchChangesCard(patch, current)) return current;
      requested = relationsToSend(patch, current);
      scalars = expectedAfterPatch(patch, current);
      try {
        const answer = await this.call<unknown>('crm.type.update', { id: current.record.id, fields: toNativeUpdateFields(patch, current) }, 'idempotent', context);
        written = { card: fromNativeCard(typeOfResult(answer.result), this.timeZone), readBack: false };
      } finally {
        await this.invalidate();
      }
    } catch (error) {
      throw this.fail(error, { entityTypeId, write: true });
    }
    const after = await this.readBack(written, { relations: requested, scalars }, context);
    await this.audit(actor, entityTypeId, 'update', edgeChanges(entityTypeId, storedEdgesOf(before), storedEdgesOf(after), recordChanges(before.record, after.record)));
    return after;
  }

  private async deleteNow(entityTypeId: number, actor: Actor, options: WriteOptions): Promise<void> {
    try {
      const current = await this.readCard(entityTypeId, options.context);
      if (!current) throw typeNotFound(entityTypeId);
      assertVersion(current, options);
      try {
        await this.call<unknown>('crm.type.delete', { id: current.record.id }, 'idempotent', options.context);
      } catch (error) {
        // A repeated delete whose first try was carried out: the type is gone, as asked.
        if (!(error instanceof Bitrix24Error && error.kind === 'not_found')) throw error;
      } finally {
        await this.invalidate();
      }
      await this.audit(actor, entityTypeId, 'delete', wholeType(current.record, storedEdgesOf(current), 'before'));
    } catch (error) {
      throw this.fail(error, { entityTypeId, write: true });
    }
  }
}

/** The user's token was refused, could not be renewed, or its refresh token died. */
function isUserAuthorizationFailure(error: unknown): boolean {
  if (error instanceof Bitrix24Error) return error.kind === 'invalid_credentials' || error.kind === 'expired_token';
  return error instanceof OAuthError && error.kind !== 'unavailable';
}

function inMemory(all: readonly TypeRecord[], query: ListQuery): { records: TypeRecord[]; total: number } {
  const kept = query.conditions.length ? all.filter((r) => query.conditions.every((c) => matchesCondition(r, c))) : [...all];
  kept.sort(compareRecords(query.sort.filter((k) => k.field !== 'isInitialized')));
  return { records: kept.slice(query.offset, query.offset + query.limit), total: kept.length };
}

function assertVersion(current: TypeCard, options: WriteOptions): void {
  const version = cardVersion(current);
  checkIfMatch(options, version);
}

