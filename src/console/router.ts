import { useEffect, useState } from 'preact/hooks';

/**
 * The console's pages: the jobs list (with upload) at `/`, one job at `/jobs/{id}`, the datasets
 * at `/datasets` and one at `/datasets/{name}`, the schedules at `/schedules` and one at `/schedules/{id}`, the query page at `/query`,
 * the connections at `/connections`.
 */
export type Route =
  | { page: 'jobs'; query: URLSearchParams }
  | { page: 'job'; jobId: string }
  | { page: 'datasets' }
  | { page: 'dataset'; name: string }
  | { page: 'schedules' }
  | { page: 'query'; query: URLSearchParams }
  | { page: 'schedule'; scheduleId: string }
  | { page: 'connections' }
  | { page: 'missing' };

const listeners = new Set<() => void>();
window.addEventListener('popstate', () => listeners.forEach((listener) => listener()));

export function navigate(url: string): void {
  if (url === location.pathname + location.search) return;
  history.pushState(null, '', url);
  listeners.forEach((listener) => listener());
  window.scrollTo(0, 0);
}

function parse(): Route {
  if (location.pathname === '/') return { page: 'jobs', query: new URLSearchParams(location.search) };
  const job = /^\/jobs\/([^/]+)$/.exec(location.pathname);
  if (job?.[1]) return { page: 'job', jobId: decodeURIComponent(job[1]) };
  if (location.pathname === '/datasets') return { page: 'datasets' };
  const dataset = /^\/datasets\/([^/]+)$/.exec(location.pathname);
  if (dataset?.[1]) return { page: 'dataset', name: decodeURIComponent(dataset[1]) };
  if (location.pathname === '/schedules') return { page: 'schedules' };
  if (location.pathname === '/connections') return { page: 'connections' };
  if (location.pathname === '/query') return { page: 'query', query: new URLSearchParams(location.search) };
  const schedule = /^\/schedules\/([^/]+)$/.exec(location.pathname);
  if (schedule?.[1]) return { page: 'schedule', scheduleId: decodeURIComponent(schedule[1]) };
  return { page: 'missing' };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(parse);
  useEffect(() => {
    const listener = () => setRoute(parse());
    listeners.add(listener);
    return () => void listeners.delete(listener);
  }, []);
  return route;
}

/** A plain link that navigates inside the console (and still opens in a new tab with a modifier). */
export function onLinkClick(event: MouseEvent): void {
  const anchor = event.currentTarget as HTMLAnchorElement;
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(anchor.getAttribute('href') ?? '/');
}
