import { reconcileAction, sweepNeedsFinalizing, type RowFacts } from './reconcile.rules';

const facts = (f: Partial<RowFacts>): RowFacts => ({
  kind: 'run',
  status: 'running',
  hasOutcome: false,
  job: null,
  heldByLiveWorker: false,
  registryComplete: true,
  attempts: 1,
  maxAttempts: 3,
  ageMs: 60_000,
  ...f,
});
const job = (state: string, failedReason: string | null = null) => ({ state, failedReason, attemptsMade: 0 });

describe('reconcileAction', () => {
  it('finishes a row from its stored outcome, whatever its job says', () => {
    for (const j of [null, job('completed'), job('active'), job('failed', 'x')])
      expect(reconcileAction(facts({ hasOutcome: true, job: j })).kind).toBe('finish');
    expect(reconcileAction(facts({ hasOutcome: true, status: 'queued', ageMs: 0 })).kind).toBe('finish');
  });

  it('leaves a row whose job BullMQ will still run, or that changed moments ago', () => {
    for (const s of ['active', 'waiting', 'delayed', 'prioritized', 'waiting-children'])
      expect(reconcileAction(facts({ job: job(s) }))).toMatchObject({ kind: 'keep', why: `its job is ${s}` });
    expect(reconcileAction(facts({ status: 'queued', ageMs: 2000 })).kind).toBe('keep');
  });

  it('re-adds the job of a queued row that lost it', () => {
    expect(reconcileAction(facts({ status: 'queued' }))).toEqual({ kind: 'enqueue', why: 'it is queued but its job is missing' });
  });

  it('leaves a running row a live worker holds, and judges none while the registry may be incomplete', () => {
    expect(reconcileAction(facts({ heldByLiveWorker: true })).kind).toBe('keep');
    expect(reconcileAction(facts({ registryComplete: false })).why).toMatch(/Redis restarted too recently/);
  });

  it('queues again a running row nobody runs, while it has attempts left, and fails it after with the reason', () => {
    expect(reconcileAction(facts({ attempts: 2 }))).toMatchObject({
      kind: 'requeue',
      why: expect.stringMatching(/attempt 3 of 3/) as unknown,
    });
    expect(reconcileAction(facts({ attempts: 3 }))).toEqual({
      kind: 'fail',
      why: 'its job is missing, no outcome is stored, no live worker runs it, and its 3 attempt(s) are spent',
    });
  });

  it('fails a row whose job ended without reaching it, saying how', () => {
    expect(reconcileAction(facts({ job: job('failed', 'connect ECONNREFUSED') }))).toMatchObject({
      kind: 'fail',
      why: 'its job failed: connect ECONNREFUSED (no outcome reached the run)',
    });
    expect(reconcileAction(facts({ job: job('completed'), kind: 'evaluation' })).why).toBe(
      'its job completed without recording an outcome, and none is stored',
    );
  });
});

describe('sweepNeedsFinalizing', () => {
  it('finalizes a sweep whose runs have all ended when no finalize job will', () => {
    expect(sweepNeedsFinalizing(0, null)).toBe(true);
    expect(sweepNeedsFinalizing(0, job('waiting-children'))).toBe(true);
    expect(sweepNeedsFinalizing(0, job('completed'))).toBe(true);
    expect(sweepNeedsFinalizing(0, job('waiting'))).toBe(false);
    expect(sweepNeedsFinalizing(2, null)).toBe(false);
  });
});
