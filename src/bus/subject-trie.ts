// A subscription index keyed by subject pattern, matched one token at a time (the NATS sublist
// idea): a publish costs O(tokens) rather than O(subscriptions). Results for literal subjects are
// cached until the next insert or remove, because hot subjects are published far more often than
// subscriptions change.

interface TrieNode<T> {
  children: Map<string, TrieNode<T>>;
  star: TrieNode<T> | undefined; // `*`
  tail: Set<T> | undefined; // `>` at this level
  values: Set<T> | undefined; // patterns that end here
}

function node<T>(): TrieNode<T> {
  return { children: new Map(), star: undefined, tail: undefined, values: undefined };
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
        n.tail ??= new Set();
        if (!n.tail.has(value)) this.#size++;
        n.tail.add(value);
        this.#cache.clear();
        return;
      }
      let next: TrieNode<T> | undefined;
      if (t === '*') next = n.star ??= node();
      else {
        next = n.children.get(t);
        if (next === undefined) n.children.set(t, (next = node()));
      }
      n = next;
    }
    n.values ??= new Set();
    if (!n.values.has(value)) this.#size++;
    n.values.add(value);
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
        removed = n.tail?.delete(value) ?? false;
        if (n.tail?.size === 0) n.tail = undefined;
        break;
      }
      path.push([n, t]);
      n = t === '*' ? n.star : n.children.get(t);
      if (i === tokens.length - 1 && n) {
        removed = n.values?.delete(value) ?? false;
        if (n.values?.size === 0) n.values = undefined;
      }
    }
    if (!removed) return false;
    this.#size--;
    this.#cache.clear();
    // Prune nodes that hold nothing any more, deepest first.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, t] = path[i]!;
      const child = t === '*' ? parent.star : parent.children.get(t);
      if (!child || child.values || child.tail || child.star || child.children.size > 0) break;
      if (t === '*') parent.star = undefined;
      else parent.children.delete(t);
    }
    return true;
  }

  /** Every value whose pattern matches the literal `subject`. Do not mutate the returned array. */
  match(subject: string): readonly T[] {
    const cached = this.#cache.get(subject);
    if (cached) return cached;
    const out: T[] = [];
    const tokens = subject.split('.');
    this.#walk(this.#root, tokens, 0, out);
    if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
    this.#cache.set(subject, out);
    return out;
  }

  #walk(n: TrieNode<T>, tokens: string[], i: number, out: T[]): void {
    if (i === tokens.length) {
      if (n.values) for (const v of n.values) out.push(v);
      return;
    }
    // `>` needs at least one more token, which holds here since i < tokens.length.
    if (n.tail) for (const v of n.tail) out.push(v);
    const child = n.children.get(tokens[i]!);
    if (child) this.#walk(child, tokens, i + 1, out);
    if (n.star) this.#walk(n.star, tokens, i + 1, out);
  }
}
