import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { apiKey, setApiKey } from './api';
import { API } from './components';
import { EvaluationPage } from './evaluation-page';
import { OverviewPage } from './overview-page';
import { RunPage } from './run-page';
import { SweepPage } from './sweep-page';
import './style.css';

type Route = { page: 'overview' } | { page: 'sweep' | 'run' | 'evaluation'; id: string };

/** Hash routes (#/sweeps/<id>, …): the API serves one static file, with no fallback for deep paths. */
function parseRoute(hash: string): Route {
  const m = /^#\/(sweeps|runs|evaluations)\/([^/?#]+)/.exec(hash);
  if (!m) return { page: 'overview' };
  const id = decodeURIComponent(m[2]);
  switch (m[1]) {
    case 'sweeps':
      return { page: 'sweep', id };
    case 'runs':
      return { page: 'run', id };
    default:
      return { page: 'evaluation', id };
  }
}

function KeyField() {
  const [key, setKey] = useState(apiKey());
  return (
    <form
      class="key"
      onSubmit={(e) => {
        e.preventDefault();
        setApiKey(key.trim());
        location.reload();
      }}
    >
      <input
        type="password"
        placeholder="API key (if reads need one)"
        value={key}
        onInput={(e) => setKey(e.currentTarget.value)}
        aria-label="API key"
      />
    </form>
  );
}

function App() {
  const [route, setRoute] = useState(parseRoute(location.hash));
  useEffect(() => {
    const on = (): void => setRoute(parseRoute(location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  let page;
  switch (route.page) {
    case 'overview':
      page = <OverviewPage />;
      break;
    case 'sweep':
      page = <SweepPage id={route.id} key={route.id} />;
      break;
    case 'run':
      page = <RunPage id={route.id} key={route.id} />;
      break;
    case 'evaluation':
      page = <EvaluationPage id={route.id} key={route.id} />;
      break;
  }
  return (
    <>
      <header>
        <a class="brand" href="#/">
          ICE results
        </a>
        <nav>
          <a href="#/">sweeps, runs, evaluations</a>
          <a href={`${API}docs`}>API docs</a>
          <a href={`${API}queues`}>queues</a>
        </nav>
        <KeyField />
      </header>
      <main>{page}</main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
