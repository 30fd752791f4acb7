// The client-mode links of one gateway: made from the configuration, by components
// (linkTarget/linkSource with a URI) and over the operator API; each named (LINK_NAME, else
// link-<n>), held by owners and closed with its last one. Links that would share a connection
// share it (link-sharing.ts) or are refused with the conflict named.
import type { Bus } from '../bus/bus.ts';
import type { LinkConfig } from '../config/load.ts';
import { ConfigError } from '../config/load.ts';
import type { Logger } from '../observability/logger.ts';
import type { GrantLimits } from '../security/subject-policy.ts';
import { RemoteLink } from './remote-link.ts';
import { linkKey, conflictMessage } from './link-sharing.ts';

interface Entry {
  link: RemoteLink;
  key: string;
  owners: Set<string>;
}

export class LinkRegistry {
  #byKey = new Map<string, Entry>();
  #byId = new Map<string, Entry>();
  #made = 0;
  #bus: Bus;
  #log: Logger;
  #grants: GrantLimits;
  /** Called for every link made (the CLI prints its progress, tests watch it). */
  onLink: (link: RemoteLink) => void = () => {};

  constructor(bus: Bus, log: Logger, grants: GrantLimits) {
    this.#bus = bus;
    this.#log = log;
    this.#grants = grants;
  }

  /**
   * The link for `cfg`, held by `owner`: the one already open to the same connection (when it
   * agrees on every setting), else a new one. A ConfigError names a conflict.
   */
  acquire(owner: string, cfg: LinkConfig): RemoteLink {
    const key = linkKey(cfg);
    const shared = this.#byKey.get(key);
    if (shared) {
      const conflict = conflictMessage(shared.link.config, cfg);
      if (conflict) throw new ConfigError(conflict);
      shared.owners.add(owner);
      return shared.link;
    }
    if (cfg.name !== undefined && this.#byId.has(cfg.name)) throw new ConfigError(`${cfg.where}: a link named ${JSON.stringify(cfg.name)} (LINK_NAME) exists already, to another server or with other handshake values`);
    let id = cfg.name;
    while (id === undefined || this.#byId.has(id)) id = `link-${++this.#made}`;
    const link = new RemoteLink(cfg, this.#bus, this.#log, this.#grants, id);
    link.on('error', () => {}); // logged by the link; an error event must never crash the node
    const entry: Entry = { link, key, owners: new Set([owner]) };
    this.#byKey.set(key, entry);
    this.#byId.set(id, entry);
    this.onLink(link);
    link.start();
    return link;
  }

  /** `owner` lets go of link `id`; the link closes (1000) with its last owner. */
  async release(owner: string, id: string): Promise<void> {
    const e = this.#byId.get(id);
    if (!e) return;
    e.owners.delete(owner);
    if (e.owners.size === 0) await this.#close(e, 1000, 'link deleted');
  }

  /** Closes link `id` whoever holds it (the operator API's DELETE); false when there is none. */
  async remove(id: string): Promise<boolean> {
    const e = this.#byId.get(id);
    if (!e) return false;
    await this.#close(e, 1000, 'link deleted');
    return true;
  }

  get(id: string): RemoteLink | undefined {
    return this.#byId.get(id)?.link;
  }

  owners(id: string): string[] {
    return [...(this.#byId.get(id)?.owners ?? [])];
  }

  list(): RemoteLink[] {
    return [...this.#byId.values()].map((e) => e.link);
  }

  async #close(e: Entry, code: number, reason: string): Promise<void> {
    this.#byKey.delete(e.key);
    this.#byId.delete(e.link.id);
    await e.link.close(code, reason);
  }

  async closeAll(): Promise<void> {
    const all = [...this.#byId.values()];
    this.#byKey.clear();
    this.#byId.clear();
    await Promise.all(all.map((e) => e.link.close()));
  }
}
