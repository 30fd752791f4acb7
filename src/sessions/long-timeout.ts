// setTimeout fires at once for delays over 2^31-1 ms (~24.8 days), so a credential expiring
// months ahead would end its session right after welcome. This timer waits in steps of at most
// that limit until the deadline is reached.

export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface LongTimeout {
  clear(): void;
}

/** Calls `fn` at epoch-milliseconds `deadline` (at once if it has passed). The timer is unref'd. */
export function setLongTimeout(fn: () => void, deadline: number): LongTimeout {
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const left = deadline - Date.now();
    if (left <= MAX_TIMER_MS) timer = setTimeout(fn, Math.max(0, left));
    else timer = setTimeout(arm, MAX_TIMER_MS);
    timer.unref();
  };
  arm();
  return { clear: () => clearTimeout(timer) };
}
