import { Command, Option } from 'commander';
import { BootstrapError } from '../access/bootstrap.js';
import { InvalidationBus } from '../access/invalidation.js';
import { RedisConnection } from '../access/redis.js';
import { presentKey } from '../access/key-model.js';
import { KeysService, type KeyChanges, type KeyInput } from '../access/keys-service.js';
import { version } from '../app.js';
import { INT32_MAX } from '../domain/input-rules.js';
import { ConfigError, loadConfig } from '../config.js';
import { stderrLog } from '../log-throttle.js';
import { ApiError } from '../errors.js';
import { PortalsService } from '../portals/portals-service.js';
import { banner, closeOnSignals, startServer } from '../server.js';
import { loadSecretBox, migrate, openStore, type SecretBox } from '../store/store.js';
import { Bitrix24PortalSetup } from '../portals/bitrix24/bitrix24-portals.js';
import { KEY_KINDS, type KeyRecord } from '../domain/records.js';
import { CLI_AUDIT } from '../domain/audit.js';

/** The CLI works on the store directly (DATABASE_URL / DATA_DIR), and tells running servers through Redis when REDIS_URL is set. */
async function withServices<T>(work: (s: { keys: KeysService; portals: PortalsService }) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const store = openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  const connection = config.redisUrl ? new RedisConnection(config.redisUrl, stderrLog, { consequence: 'Changes are made in the store all the same; running servers see them within 1 s (key cache).' }) : null;
  const bus = new InvalidationBus(connection?.client ?? null, stderrLog);
  try {
    await migrate(store);
    await connection?.connected();
    let box: SecretBox | null = null;
    const bitrix24 = new Bitrix24PortalSetup(store, () => (box ??= loadSecretBox({ dataDir: config.dataDir }).box));
    return await work({ keys: new KeysService(store, bus), portals: new PortalsService(store, bus, bitrix24) });
  } finally {
    connection?.disconnect();
    await store.close();
  }
}

function table(rows: Record<string, unknown>[], columns: string[]): string {
  if (!rows.length) return '(none)';
  const cell = (v: unknown) => (v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(',') || '-' : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n');
}

const KEY_COLUMNS = ['id', 'kind', 'name', 'portalId', 'keyPrefix', 'scopes', 'accessMode', 'requestsPerSecond', 'userId', 'expiresAt'];
const list = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean);
/** A whole number in the 32-bit range of the store's integer columns (the same rule as the API). */
const integer = (name: string) => (value: string) => {
  if (!/^\d{1,10}$/.test(value) || Number(value) > INT32_MAX) throw new Error(`${name} must be a whole number from 0 to ${INT32_MAX}, got "${value}"`);
  return Number(value);
};

function printKey(key: KeyRecord, json: boolean, secret?: string) {
  const shown = { ...presentKey(key), ...(secret ? { secret } : {}) };
  if (json) console.log(JSON.stringify(shown, null, 2));
  else {
    console.log(table([shown], KEY_COLUMNS));
    if (secret) console.log(`\nSecret (shown once): ${secret}`);
  }
}

const program = new Command('smartproc').version(version).description('Self-hosted Bitrix24 smart process types (VibeCode /v1 API)');

program
  .command('serve', { isDefault: true })
  .description('run the HTTP server (PORT, HOST, DATA_DIR, DATABASE_URL, REDIS_URL, LOG_LEVEL)')
  .action(async () => {
    const config = loadConfig();
    const server = await startServer(config);
    console.log(banner(server, config));
    closeOnSignals(server.app);
  });

const keys = program.command('keys').description('manage keys (works on the store directly)');
keys
  .command('list')
  .option('--portal <id>', 'only keys of this portal', integer('--portal'))
  .addOption(new Option('--kind <kind>', 'only keys of this kind').choices(KEY_KINDS))
  .option('--json', 'print JSON')
  .action(async (o) => withServices(async ({ keys }) => {
    const found = (await keys.list({ portalId: o.portal, kind: o.kind })).map(presentKey);
    console.log(o.json ? JSON.stringify(found, null, 2) : table(found, KEY_COLUMNS));
  }));

function keyOptions(command: Command, forCreate: boolean): Command {
  if (forCreate) {
    command
      .addOption(new Option('--kind <kind>', 'key kind').choices(KEY_KINDS).default('personal'))
      .option('--portal <id>', 'portal the key belongs to (personal and application keys)', integer('--portal'));
  }
  return command
    .option('--name <name>', 'a name to recognise the key by')
    .option('--scopes <list>', 'comma-separated scopes, e.g. crm,task or vibe:mgmt:keys', list)
    .option('--user-id <id>', 'portal user a personal key acts as', integer('--user-id'))
    .option('--rps <n>', 'requests per second (default 10)', integer('--rps'))
    .option('--no-limit', 'no rate limit')
    .option('--readonly', 'READONLY: reads only')
    .option('--readwrite', 'READWRITE (default)')
    .option('--expires <iso>', 'expiry time (ISO 8601); "never" clears it')
    .option('--allowed-ips <list>', 'comma-separated IPs/CIDRs; "" for any', (v: string) => list(v))
    .option('--redirect-uris <list>', 'application keys: comma-separated URIs user authorization may return to; "" for none', (v: string) => list(v))
    .option('--json', 'print JSON');
}

function keyFields(o: Record<string, unknown>): KeyChanges {
  const fields: KeyChanges = {};
  if (o.name !== undefined) fields.name = o.name as string;
  if (o.scopes !== undefined) fields.scopes = o.scopes as string[];
  if (o.userId !== undefined) fields.userId = o.userId as number;
  if (o.limit === false) fields.requestsPerSecond = null;
  else if (o.rps !== undefined) fields.requestsPerSecond = o.rps as number;
  if (o.readonly) fields.accessMode = 'READONLY';
  if (o.readwrite) fields.accessMode = 'READWRITE';
  if (o.expires !== undefined) fields.expiresAt = o.expires === 'never' ? null : (o.expires as string);
  if (o.allowedIps !== undefined) fields.allowedIps = o.allowedIps as string[];
  if (o.redirectUris !== undefined) fields.redirectUris = o.redirectUris as string[];
  return fields;
}

keyOptions(keys.command('create').description('create a key and print its secret (once)'), true).action(async (o) =>
  withServices(async ({ keys }) => {
    const input: KeyInput = { kind: o.kind, portalId: o.portal ?? null, ...keyFields(o) };
    const { key, secret } = await keys.create(input, null);
    printKey(key, Boolean(o.json), secret);
  }),
);

keyOptions(keys.command('update <id>').description('change a key'), false).action(async (id: string, o) =>
  withServices(async ({ keys }) => printKey(await keys.update(id, keyFields(o), null), Boolean(o.json))),
);

keys
  .command('delete <id>')
  .description('delete a key (refused on the next request)')
  .action(async (id: string) => withServices(async ({ keys }) => {
    await keys.delete(id);
    console.log(`deleted ${id}`);
  }));

keys
  .command('rotate <id>')
  .description('give a key a new secret; the old one stops at once or after --grace seconds')
  .option('--grace <seconds>', 'seconds the old secret keeps working', integer('--grace'), 0)
  .option('--json', 'print JSON')
  .action(async (id: string, o) => withServices(async ({ keys }) => {
    const { key, secret } = await keys.rotate(id, o.grace);
    printKey(key, Boolean(o.json), secret);
  }));

const portals = program.command('portals').description('manage local portals (works on the store directly)');
const PORTAL_COLUMNS = ['id', 'kind', 'name', 'domain', 'timeZone'];
portals
  .command('list')
  .option('--json', 'print JSON')
  .action(async (o) => withServices(async ({ portals }) => {
    const found = await portals.list();
    console.log(o.json ? JSON.stringify(found, null, 2) : table(found as never, PORTAL_COLUMNS));
  }));
portals
  .command('create')
  .option('--name <name>', 'portal name')
  .option('--time-zone <tz>', 'IANA time zone', 'UTC')
  .option('--kind <kind>', 'local or bitrix24', 'local')
  .option('--webhook <url>', 'bitrix24: incoming webhook URL with the crm scope')
  .option('--oauth-client-id <id>', 'bitrix24 OAuth: client_id')
  .option('--oauth-client-secret <secret>', 'bitrix24 OAuth: client_secret')
  .option('--oauth-endpoint <url>', 'bitrix24 OAuth: client endpoint, https://{portal}/rest/')
  .option('--oauth-access-token <token>', 'bitrix24 OAuth: access token')
  .option('--oauth-refresh-token <token>', 'bitrix24 OAuth: refresh token')
  .option('--oauth-expires-at <time>', 'bitrix24 OAuth: ISO 8601 or epoch seconds')
  .option('--oauth-token-url <url>', 'bitrix24 OAuth: token URL (default https://oauth.bitrix.info/oauth/token/)')
  .option('--burst <n>', "bitrix24: the portal's request limit (default 50)", integer('--burst'))
  .option('--per-second <n>', 'bitrix24: drain per second (default 2)', Number)
  .option('--json', 'print JSON')
  .action(async (o) => withServices(async ({ portals }) => {
    const oauth = o.oauthClientId !== undefined || o.oauthAccessToken !== undefined
      ? { clientId: o.oauthClientId, clientSecret: o.oauthClientSecret, clientEndpoint: o.oauthEndpoint, accessToken: o.oauthAccessToken, refreshToken: o.oauthRefreshToken, expiresAt: o.oauthExpiresAt && /^\d+$/.test(o.oauthExpiresAt) ? Number(o.oauthExpiresAt) : o.oauthExpiresAt, tokenUrl: o.oauthTokenUrl }
      : undefined;
    const limits = o.burst !== undefined || o.perSecond !== undefined ? { burst: o.burst, perSecond: o.perSecond } : undefined;
    const portal = await portals.create({ kind: o.kind, name: o.name, timeZone: o.timeZone, webhookUrl: o.webhook, oauth, limits });
    console.log(o.json ? JSON.stringify(portal, null, 2) : table([portal as never], PORTAL_COLUMNS));
  }));
portals
  .command('delete <id>')
  .option('--force', 'also delete its keys and types')
  .action(async (id: string, o) => withServices(async ({ portals }) => {
    await portals.delete(integer('id')(id), Boolean(o.force));
    console.log(`deleted portal ${id}`);
  }));

program
  .command('sessions')
  .description('user sessions of application keys')
  .command('create')
  .requiredOption('--key <id>', 'id of the application key')
  .requiredOption('--user-id <id>', 'portal user the session acts as', integer('--user-id'))
  .option('--json', 'print JSON')
  .action(async (o) => withServices(async ({ keys }) => {
    const { session, token } = await keys.mintSession({ keyId: o.key, userId: o.userId }, CLI_AUDIT);
    const shown = { id: session.id, token, keyId: session.keyId, portalId: session.portalId, userId: session.userId, expiresAt: new Date(session.expiresAt).toISOString() };
    console.log(o.json ? JSON.stringify(shown, null, 2) : `${table([shown], ['id', 'keyId', 'portalId', 'userId', 'expiresAt'])}\n\nToken (shown once): ${token}`);
  }));

program.parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof ApiError) {
    console.error(`error: ${error.code}: ${error.message}`);
    for (const d of error.details ?? []) console.error(`  ${d.location}: ${d.message}${d.fix ? ` (${d.fix})` : ''}`);
  } else if (error instanceof ConfigError || error instanceof BootstrapError) {
    console.error(`error: ${error.message}`);
  } else {
    console.error(error instanceof Error ? `error: ${error.message}` : error);
  }
  process.exit(1);
});
