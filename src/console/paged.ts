import { useEffect, useState } from 'preact/hooks';
import type { Page } from './api.js';

/**
 * A keyset-paged list read once: the first page when the component mounts, the next one on
 * more(). rows is null until the first page is in.
 */
export function usePages<T>(read: (cursor: string | null, signal?: AbortSignal) => Promise<Page<T>>) {
  const [rows, setRows] = useState<T[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);

  useEffect(() => {
    const controller = new AbortController();
    read(null, controller.signal).then(
      (page) => {
        setRows(page.results);
        setNext(page.next_cursor);
        setLoading(false);
      },
      (err: Error) => {
        if (err.name === 'AbortError') return;
        setError(err.message);
        setLoading(false);
      },
    );
    return () => controller.abort();
  }, []);

  function more(): void {
    if (!next || loading) return; // one page at a time: a second click would read the same one again
    setLoading(true);
    read(next).then(
      (page) => {
        setRows((current) => [...(current ?? []), ...page.results]);
        setNext(page.next_cursor);
        setError(null);
        setLoading(false);
      },
      (err: Error) => {
        setError(err.message);
        setLoading(false);
      },
    );
  }
  return { rows, next, error, loading, more };
}
