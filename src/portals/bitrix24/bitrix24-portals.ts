/**
 * Creating and changing `bitrix24` portal records (issue 9 item 1), called by
 * PortalsService for `kind: "bitrix24"`: validation (400), the credential check (one
 * `scope` call: 422 / 502), and the writes of the portal row and its sealed credential
 * row in one transaction. Kept apart from PortalsService so that its internals can change
 * without this.
 */
import { ApiError, validationError, type ErrorDetail } from '../../errors.js';
import type { PortalRecord } from '../../domain/records.js';
import { portalChanges, type AuditContext } from '../../domain/audit.js';
import { recordPortalChange } from '../portal-audit.js';
import type { Repositories, SecretBox, Store } from '../../store/store.js';
import type { PortalBudgets } from './budget.js';
import { budgetNameOf } from './bitrix24-portal.js';
import { checkCredential, credentialOf, fullLimits, limitsProblems, seal, summaryOf, type Bitrix24Input } from './portal-credentials.js';

export interface Bitrix24CreateInput extends Bitrix24Input {
  name?: string;
  timeZone?: string;
}


function domainTaken(domain: string): ApiError {
  return validationError([{ location: 'body', message: `a portal for the Bitrix24 portal ${domain} already exists`, fix: 'use that portal (GET /v1/portals), or PATCH its credentials' }]);
}

export class Bitrix24PortalSetup {
  constructor(
    private readonly store: Store,
    /** The server's SecretBox, loaded on first use (a server without bitrix24 portals never needs a key). */
    private readonly box: () => SecretBox,
    private readonly budgets: PortalBudgets | null = null,
  ) {}

  async create(input: Bitrix24CreateInput, extraProblems: ErrorDetail[], audit: AuditContext): Promise<PortalRecord> {
    const problems = [...extraProblems];
    const credential = credentialOf(input, true, problems);
    problems.push(...limitsProblems(input.limits));
    if (problems.length || !credential) throw validationError(problems);
    const box = this.box();
    const summary = summaryOf(credential);
    const existing = (await this.store.read.portals.list()).find((p) => p.domain === summary.domain);
    if (existing) throw domainTaken(summary.domain);
    const limits = fullLimits(input.limits);
    // Inside the portal's budget (named by its domain), as every other call to the portal.
    const checked = await checkCredential(credential, { budget: this.budgets?.get(budgetNameOf({ id: 0, domain: summary.domain }), limits) });
    try {
      const id = await this.store.write(async ({ repos }) => {
        const portal = await repos.portals.create({ kind: 'bitrix24', name: input.name?.trim() || summary.domain, domain: summary.domain, timeZone: input.timeZone ?? 'UTC' });
        await repos.bitrix24.insert(portal.id, storedValues(box, portal.id, checked, summary.domain, limits));
        await recordPortalChange(repos, audit, portal.id, 'create', portalChanges(null, await repos.portals.get(portal.id)));
        return portal.id;
      });
      return (await this.store.read.portals.get(id))!;
    } catch (error) {
      if (this.store.failureOf(error) === 'unique') throw domainTaken(summary.domain);
      throw error;
    }
  }

  /** Whether a PATCH body touches what this class owns. */
  static touches(input: Bitrix24Input): boolean {
    return input.webhookUrl !== undefined || input.oauth !== undefined || input.limits !== undefined;
  }

  /** Replaces the credential (checked first) and/or the limits of a bitrix24 portal. The caller publishes the change. */
  async update(portal: PortalRecord, input: Bitrix24Input, audit: AuditContext): Promise<void> {
    // The entry of the change, in its write: the record before (the caller's) and as written.
    const recordChange = async (repos: Repositories, credentialReplaced: boolean) => {
      const changes = portalChanges(portal, await repos.portals.get(portal.id), { credentialReplaced });
      if (Object.keys(changes).length) await recordPortalChange(repos, audit, portal.id, 'update', changes);
    };
    if (portal.kind !== 'bitrix24') {
      throw validationError([{ location: input.limits !== undefined ? 'body.limits' : input.oauth !== undefined ? 'body.oauth' : 'body.webhookUrl', message: 'only bitrix24 portals have credentials and limits' }]);
    }
    const problems: ErrorDetail[] = [];
    const credential = credentialOf(input, false, problems);
    problems.push(...limitsProblems(input.limits));
    if (problems.length) throw validationError(problems);
    const limits = fullLimits(input.limits, portal.bitrix24?.limits);
    if (!credential) {
      await this.store.write(async ({ repos }) => {
        await repos.bitrix24.update(portal.id, limits);
        await recordChange(repos, false);
      });
      return;
    }
    const box = this.box();
    const summary = summaryOf(credential);
    if (summary.domain !== portal.domain) {
      const other = (await this.store.read.portals.list()).find((p) => p.domain === summary.domain);
      if (other) throw domainTaken(summary.domain);
    }
    const checked = await checkCredential(credential, { budget: this.budgets?.get(budgetNameOf(portal), limits) });
    try {
      await this.store.write(async ({ repos }) => {
        await repos.bitrix24.update(portal.id, storedValues(box, portal.id, checked, summary.domain, limits));
        if (summary.domain !== portal.domain) await repos.portals.setDomain(portal.id, summary.domain);
        await recordChange(repos, true);
      });
    } catch (error) {
      if (this.store.failureOf(error) === 'unique') throw domainTaken(summary.domain);
      throw error;
    }
  }
}

/** The row values of a checked credential: sealed for this portal, with what answers may show. */
function storedValues(box: SecretBox, portalId: number, checked: Parameters<typeof seal>[2], domain: string, limits: ReturnType<typeof fullLimits>) {
  return {
    credentialType: checked.type,
    sealed: seal(box, portalId, checked),
    userId: summaryOf(checked).userId,
    domain,
    memberId: checked.type === 'oauth' ? (checked.memberId ?? null) : null,
    ...limits,
  };
}
