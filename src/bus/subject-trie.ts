// A subscription index keyed by subject pattern, matched one token at a time (the NATS sublist
// idea): a publish costs O(tokens) rather than O(subscriptions). Results for literal subjects are
// cached until the next insert or remove, because hot subjects are published far more often than
// subscriptions change.

interface TrieNode<T> {
  children: Map<string, TrieNode<T>> | undefined; // created on the first child: most nodes are leaves
  star: TrieNode<T> | undefined; // `*`
  tail: Bag<T> | undefined; // `>` at this level
  values: Bag<T> | undefined; // patterns that end here
}

/**
 * The values at one node: held directly while there is one (by far the common case: every
 * session's reply subject is its own node), a Set from the second on. Values must not be Sets.
 */
type Bag<T> = T | Set<T>;

/** Adds `v`; returns the new bag, or undefined when `v` was there already. */
function bagAdd<T>(bag: Bag<T> | undefined, v: T): Bag<T> | undefined {
  if (bag === undefined) return v;
  if (bag instanceof Set) return bag.has(v) ? undefined : bag.add(v);
  return bag === v ? undefined : new Set([bag, v]);
}

/** Removes `v`; returns [the bag left (undefined when empty), whether `v` was there]. */
function bagDelete<T>(bag: Bag<T> | undefined, v: T): [Bag<T> | undefined, boolean] {
  if (bag === undefined) return [undefined, false];
  if (!(bag instanceof Set)) return bag === v ? [undefined, true] : [bag, false];
  const removed = bag.delete(v);
  return [bag.size === 0 ? undefined : bag, removed];
}

function bagInto<T>(bag: Bag<T> | undefined, out: T[]): void {
  if (bag === undefined) return;
  if (bag instanceof Set) for (const v of bag) out.push(v);
  else out.push(bag);
}

function node<T>(): TrieNode<T> {
  return { children: undefined, star: undefined, tail: undefined, values: undefined };
}

const CACHE_MAX = 4096;

export class SubjectTrie<T> {
  #root: TrieNode<T> = node();
  #cache = new Map<string, T[]>();
  #size = 0;

  /** Number of (pattern, value) pairs stored. */
  get size(): number {
    return this.#size;
  }

  insert(pattern: string, value: T): void {
    const tokens = pattern.split('.');
    let n = this.#root;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (t === '>') {
        const tail = bagAdd(n.tail, value);
        if (tail !== undefined) {
          n.tail = tail;
          this.#size++;
        }
        this.#cache.clear();
        return;
      }
      let next: TrieNode<T> | undefined;
      if (t === '*') next = n.star ??= node();
      else {
        next = n.children?.get(t);
        if (next === undefined) (n.children ??= new Map()).set(t, (next = node()));
      }
      n = next;
    }
    const values = bagAdd(n.values, value);
    if (values !== undefined) {
      n.values = values;
      this.#size++;
    }
    this.#cache.clear();
  }

  /** Removes one (pattern, value) pair; prunes empty branches. Returns whether it was there. */
  remove(pattern: string, value: T): boolean {
    const tokens = pattern.split('.');
    const path: Array<[TrieNode<T>, string]> = [];
    let n: TrieNode<T> | undefined = this.#root;
    let removed = false;
    for (let i = 0; i < tokens.length && n; i++) {
      const t = tokens[i]!;
      if (t === '>') {
        [n.tail, removed] = bagDelete(n.tail, value);
        break;
      }
      path.push([n, t]);
      n = t === '*' ? n.star : n.children?.get(t);
      if (i === tokens.length - 1 && n) {
        [n.values, removed] = bagDelete(n.values, value);
      }
    }
    if (!removed) return false;
    this.#size--;
    this.#cache.clear();
    // Prune nodes that hold nothing any more, deepest first.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, t] = path[i]!;
      const child = t === '*' ? parent.star : parent.children?.get(t);
      if (!child || child.values !== undefined || child.tail !== undefined || child.star || (child.children?.size ?? 0) > 0) break;
      if (t === '*') parent.star = undefined;
      else {
        parent.children!.delete(t);
        if (parent.children!.size === 0) parent.children = undefined;
      }
    }
    return true;
  }

  /**
   * Every value whose pattern matches the literal `subject`. Do not mutate the returned array.
   * `cache: false` for subjects used once (request inboxes), which would only evict useful entries.
   */
  match(subject: string, cache = true): readonly T[] {
    const cached = this.#cache.get(subject);
    if (cached) return cached;
    const out: T[] = [];
    const tokens = subject.split('.');
    this.#walk(this.#root, tokens, 0, out);
    if (!cache) return out;
    if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
    this.#cache.set(subject, out);
    return out;
  }

  #walk(n: TrieNode<T>, tokens: string[], i: number, out: T[]): void {
    if (i === tokens.length) {
      bagInto(n.values, out);
      return;
    }
    // `>` needs at least one more token, which holds here since i < tokens.length.
    bagInto(n.tail, out);
    const child = n.children?.get(tokens[i]!);
    if (child) this.#walk(child, tokens, i + 1, out);
    if (n.star) this.#walk(n.star, tokens, i + 1, out);
  }
}
