import type { SessionUser } from '../../domain/records.js';
import { Repository, type Runner } from '../repository.js';
import type { Bitrix24UserTokensTable, Db, Dialect, OAuthFlowsTable } from '../tables.js';

export type OAuthFlowStatus = 'pending' | 'complete' | 'failed' | 'done';

/** One user authorization (see migration 005). */
export interface OAuthFlowRecord {
  id: string;
  keyId: string;
  portalId: number;
  state: string;
  redirectUri: string | null;
  status: OAuthFlowStatus;
  errorCode: string | null;
  user: SessionUser | null;
  /** bitrix24: the user's tokens, sealed for this flow (until a session takes them). */
  sealedTokens: string | null;
  hasCode: boolean;
  expiresAt: number;
  createdAt: number;
}

function toFlow(row: OAuthFlowsTable): OAuthFlowRecord {
  return {
    id: row.id,
    keyId: row.key_id,
    portalId: Number(row.portal_id),
    state: row.state,
    redirectUri: row.redirect_uri,
    status: row.status as OAuthFlowStatus,
    errorCode: row.error_code,
    user: row.user_id === null ? null : { id: Number(row.user_id), name: row.user_name, email: row.user_email },
    sealedTokens: row.sealed_tokens,
    hasCode: row.code_hash !== null,
    expiresAt: Number(row.expires_at),
    createdAt: Number(row.created_at),
  };
}

/** Flows are kept this long after they expire or are collected (so that a late poll is told, not left pending), then deleted. */
const KEEP_AFTER_EXPIRY_MS = 24 * 3600 * 1000;

/** oauth_flows and bitrix24_user_tokens rows. */
export class OAuthFlowsRepository extends Repository {
  constructor(db: Db, private readonly dialect: Dialect, runner?: Runner) {
    super(db, runner);
  }

  private lock<Q extends { forUpdate(): Q }>(query: Q, forUpdate?: boolean): Q {
    return forUpdate && this.dialect === 'postgres' ? query.forUpdate() : query;
  }

  /** A new pending flow; an earlier flow of the same key and state is replaced (and old rows are swept). */
  async start(flow: { id: string; flowHash: string; keyId: string; portalId: number; state: string; redirectUri: string | null; expiresAt: number; createdAt: number }): Promise<void> {
    await this.rows(this.db.deleteFrom('oauth_flows').where('key_id', '=', flow.keyId).where('state', '=', flow.state));
    await this.rows(this.db.deleteFrom('oauth_flows').where('expires_at', '<', flow.createdAt - KEEP_AFTER_EXPIRY_MS));
    await this.rows(
      this.db.insertInto('oauth_flows').values({
        id: flow.id,
        flow_hash: flow.flowHash,
        key_id: flow.keyId,
        portal_id: flow.portalId,
        state: flow.state,
        redirect_uri: flow.redirectUri,
        status: 'pending',
        error_code: null,
        user_id: null,
        user_name: null,
        user_email: null,
        sealed_tokens: null,
        code_hash: null,
        expires_at: flow.expiresAt,
        created_at: flow.createdAt,
      }),
    );
  }

  async byFlowHash(hash: string, options: { forUpdate?: boolean } = {}): Promise<OAuthFlowRecord | null> {
    const [row] = await this.rows<OAuthFlowsTable>(this.lock(this.db.selectFrom('oauth_flows').selectAll().where('flow_hash', '=', hash), options.forUpdate));
    return row ? toFlow(row) : null;
  }

  async byState(keyId: string, state: string, options: { forUpdate?: boolean } = {}): Promise<OAuthFlowRecord | null> {
    const [row] = await this.rows<OAuthFlowsTable>(this.lock(this.db.selectFrom('oauth_flows').selectAll().where('key_id', '=', keyId).where('state', '=', state), options.forUpdate));
    return row ? toFlow(row) : null;
  }

  async byCodeHash(hash: string, options: { forUpdate?: boolean } = {}): Promise<OAuthFlowRecord | null> {
    const [row] = await this.rows<OAuthFlowsTable>(this.lock(this.db.selectFrom('oauth_flows').selectAll().where('code_hash', '=', hash), options.forUpdate));
    return row ? toFlow(row) : null;
  }

  /** pending → complete (with the user, the code's hash when the flow returns through redirect_uri, the sealed tokens) or failed. */
  async finish(id: string, outcome: { status: 'complete' | 'failed'; errorCode?: string; user?: SessionUser; sealedTokens?: string | null; codeHash?: string | null; expiresAt: number }): Promise<boolean> {
    const updated = await this.rows<{ id: string }>(
      this.db
        .updateTable('oauth_flows')
        .set({
          status: outcome.status,
          error_code: outcome.errorCode ?? null,
          user_id: outcome.user?.id ?? null,
          user_name: outcome.user?.name ?? null,
          user_email: outcome.user?.email ?? null,
          sealed_tokens: outcome.sealedTokens ?? null,
          code_hash: outcome.codeHash ?? null,
          expires_at: outcome.expiresAt,
        })
        .where('id', '=', id)
        .where('status', '=', 'pending')
        .returning('id'),
    );
    return updated.length > 0;
  }

  /** complete/failed → done: collected once. The user's tokens leave the flow. False when another collection came first. */
  async collect(id: string): Promise<boolean> {
    const updated = await this.rows<{ id: string }>(
      this.db
        .updateTable('oauth_flows')
        .set({ status: 'done', sealed_tokens: null })
        .where('id', '=', id)
        .where('status', 'in', ['complete', 'failed'])
        .returning('id'),
    );
    return updated.length > 0;
  }

  // ---- a session's Bitrix24 user tokens ----

  async insertUserTokens(sessionId: string, portalId: number, sealed: string, now = Date.now()): Promise<void> {
    await this.rows(this.db.insertInto('bitrix24_user_tokens').values({ session_id: sessionId, portal_id: portalId, sealed, version: 1, updated_at: now }));
  }

  async userTokens(sessionId: string, options: { forUpdate?: boolean } = {}): Promise<Bitrix24UserTokensTable | null> {
    const [row] = await this.rows<Bitrix24UserTokensTable>(this.lock(this.db.selectFrom('bitrix24_user_tokens').selectAll().where('session_id', '=', sessionId), options.forUpdate));
    return row ?? null;
  }

  async replaceUserTokens(sessionId: string, sealed: string, now = Date.now()): Promise<void> {
    await this.rows(
      this.db
        .updateTable('bitrix24_user_tokens')
        .set((eb) => ({ sealed, updated_at: now, version: eb('version', '+', 1) }))
        .where('session_id', '=', sessionId),
    );
  }
}
