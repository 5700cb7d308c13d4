import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.js';

/**
 * A value read now and again every `everyMs` after each answer (never two reads at once), for
 * lists with no event stream. reload() reads at once, dropping a read on its way: an answer
 * that left the server before a change must not undo it on the screen. Stops on a 404 or a
 * 401 (gone, or a token is needed: the console asks for one).
 */
export function usePolled<T>(read: (signal: AbortSignal) => Promise<T>, everyMs: number) {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const reload = useRef<() => void>(() => {});

  useEffect(() => {
    let controller: AbortController | undefined;
    let timer: number | undefined;
    const load = () => {
      controller?.abort();
      window.clearTimeout(timer);
      const current = (controller = new AbortController());
      read(current.signal).then(
        (answer) => {
          if (current.signal.aborted) return;
          setValue(answer);
          setError(null);
          timer = window.setTimeout(load, everyMs);
        },
        (err: Error) => {
          if (current.signal.aborted) return;
          const failure = err instanceof ApiError ? err : new ApiError(0, 'network', err.message);
          setError(failure);
          if (failure.status !== 404 && failure.status !== 401) timer = window.setTimeout(load, everyMs);
        },
      );
    };
    reload.current = load;
    load();
    return () => {
      controller?.abort();
      window.clearTimeout(timer);
    };
  }, []);

  return { value, error, setValue, reload: () => reload.current() };
}
