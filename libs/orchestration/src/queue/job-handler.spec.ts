import { buildHandlerMap, type JobHandler } from './job-handler';
import type { JobName } from './jobs';

const h = (): JobHandler<JobName> => ({ handle: () => Promise.resolve(null) });

describe('buildHandlerMap', () => {
  const all = [
    { name: 'run.train', handler: h(), owner: 'TrainRunHandler' },
    { name: 'sweep.finalize', handler: h(), owner: 'FinalizeSweepHandler' },
    { name: 'evaluation.run', handler: h(), owner: 'EvaluationHandler' },
  ];

  it('maps every job name to its handler', () => {
    const map = buildHandlerMap(all);
    expect(map['run.train']).toBe(all[0].handler);
  });

  it('fails when a job has no handler', () => {
    expect(() => buildHandlerMap(all.slice(1))).toThrow('job run.train has no handler');
  });

  it('fails when a job has two handlers', () => {
    expect(() => buildHandlerMap([...all, { name: 'run.train', handler: h(), owner: 'Other' }])).toThrow(
      'job run.train has 2 handlers: TrainRunHandler, Other',
    );
  });

  it('fails on a handler for an unknown job', () => {
    expect(() => buildHandlerMap([...all, { name: 'run.tain', handler: h(), owner: 'Typo' }])).toThrow(
      'Typo handle(s) unknown job run.tain',
    );
  });
});
