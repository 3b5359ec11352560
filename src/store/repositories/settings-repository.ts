import { Repository } from '../repository.js';

/** Named values of the store (`settings`): the first-start claim, the deployment id. */
export class SettingsRepository extends Repository {
  /** Sets `name` unless it is set already; true when this call set it (one winner among instances starting together). */
  async claim(name: string, value: string): Promise<boolean> {
    const rows = await this.rows<{ name: string }>(this.db.insertInto('settings').values({ name, value }).onConflict((oc) => oc.column('name').doNothing()).returning('name'));
    return rows.length > 0;
  }

  /** The value of `name`, or null. */
  async get(name: string): Promise<string | null> {
    const rows = await this.rows<{ value: string }>(this.db.selectFrom('settings').select('value').where('name', '=', name));
    return rows[0]?.value ?? null;
  }
}
