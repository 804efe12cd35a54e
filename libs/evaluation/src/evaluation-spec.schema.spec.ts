import { IceError } from '@ice/core';
import { evaluationSpecIssues, parseEvaluationSpec, type EvaluationSpec } from './evaluation-spec.schema';

const spec = (over: Partial<EvaluationSpec> = {}): EvaluationSpec => ({
  protocol: 'segmentation',
  data: { format: 'digits', limit: 8, batchSize: 32 },
  methods: ['ice', 'rollout'],
  checkpoint: '/artifacts/runs/x/final.safetensors',
  model: 'digits-micro',
  runId: null,
  saveMaps: 0,
  options: {},
  ...over,
});

const messages = (s: EvaluationSpec) => evaluationSpecIssues(s).map((i) => `${i.path.join('.')}: ${i.message}`);

describe('evaluation spec rules', () => {
  it('accepts each map protocol on digits with any explainer', () => {
    for (const protocol of ['segmentation', 'jaccard', 'corloc', 'localization'] as const) {
      expect(
        messages(spec({ protocol, methods: ['ice', 'ice-class', 'raw-attention', 'rollout', 'gradcam', 'generic-attention'] })),
      ).toEqual([]);
    }
  });

  it('pairs protocols with the formats that carry what they score', () => {
    const on = (protocol: EvaluationSpec['protocol'], format: EvaluationSpec['data']['format']) =>
      messages(
        spec({ protocol, methods: ['ice'], data: { format, root: format === 'digits' ? undefined : '/d', limit: 8, batchSize: 32 } }),
      ).filter((m) => m.startsWith('data.format'));
    expect(on('segmentation', 'imagenet-seg')).toEqual([]);
    expect(on('jaccard', 'voc')).toEqual([]);
    expect(on('corloc', 'cub')).toEqual([]);
    expect(on('localization', 'cub')).toEqual([]);
    expect(on('accuracy', 'imagenet')).toEqual([]);
    expect(on('segmentation', 'cub')[0]).toMatch(/needs foreground masks, which cub does not provide/);
    expect(on('corloc', 'imagenet-seg')[0]).toMatch(/needs ground-truth boxes/);
    expect(on('localization', 'imagenet-seg')[0]).toMatch(/boxes and class labels/);
    expect(on('segmentation', 'imagenet')[0]).toMatch(/imagenet does not provide/);
  });

  it('names unknown and repeated methods by position, per protocol', () => {
    expect(messages(spec({ methods: ['ice', 'lrp', 'ice'] }))).toEqual([
      expect.stringMatching(/^methods\.1: unknown method 'lrp' for the segmentation protocol/),
      "methods.2: method 'ice' is named twice",
    ]);
    expect(messages(spec({ protocol: 'accuracy', methods: ['cls', 'rollout'] }))).toEqual([
      expect.stringMatching(/^methods\.1: unknown method 'rollout' for the accuracy protocol; choose from ice, cls/),
    ]);
  });

  it('keeps options to the protocol (and format) they belong to', () => {
    expect(
      messages(spec({ protocol: 'jaccard', options: { taus: [0.9], excludeVoid: true, digitsSeed: 3, rolloutStartLayer: 0 } })),
    ).toEqual([]);
    expect(messages(spec({ protocol: 'corloc', options: { camThreshold: 0.2 } }))).toEqual([
      'options.camThreshold: camThreshold applies to the localization protocol only',
    ]);
    expect(messages(spec({ data: { format: 'voc', root: '/voc', limit: 8, batchSize: 32 }, options: { digitsSeed: 1 } }))).toEqual([
      'options.digitsSeed: digitsSeed applies to map protocols on digits only',
    ]);
    expect(messages(spec({ protocol: 'accuracy', methods: ['ice'], options: { imgSize: 64 }, saveMaps: 2 }))).toEqual([
      expect.stringMatching(/^saveMaps: the accuracy protocol draws no maps/),
      'options.imgSize: imgSize applies to the map protocols only',
    ]);
  });

  it('takes token pruning for the accuracy protocol only, on digits or imagenet', () => {
    const prune = { mode: 'ice' as const, keepRate: 0.7 };
    expect(messages(spec({ protocol: 'accuracy', methods: ['ice'], options: { prune } }))).toEqual([]);
    expect(messages(spec({ options: { prune } }))).toEqual(['options.prune: prune applies to the accuracy protocol only']);
    expect(
      messages(spec({ protocol: 'accuracy', methods: ['ice'], data: { format: 'cub', root: '/c', limit: 8 }, options: { prune } })),
    ).toEqual(['options.prune: token pruning is scored on digits or imagenet, not cub']);
    expect(() =>
      parseEvaluationSpec({ ...spec({ protocol: 'accuracy', methods: ['ice'] }), options: { prune: { mode: 'x', keepRate: 2 } } }),
    ).toThrow(/options\.prune\.mode.*options\.prune\.keepRate|options\.prune\.keepRate.*options\.prune\.mode/s);
  });

  it('checks roots and known splits', () => {
    expect(messages(spec({ data: { format: 'digits', root: '/d', limit: 8, batchSize: 32 } }))).toEqual([
      expect.stringMatching(/^data\.root: digits is generated/),
    ]);
    expect(messages(spec({ protocol: 'corloc', data: { format: 'cub', limit: 8, batchSize: 32 } }))).toEqual([
      'data.root: data.root is required for format cub',
    ]);
    expect(messages(spec({ protocol: 'corloc', data: { format: 'cub', root: '/c', split: 'val', limit: 8, batchSize: 32 } }))).toEqual([
      "data.split: cub has the splits train, test; got 'val'",
    ]);
    expect(messages(spec({ data: { format: 'voc', root: '/v', split: 'anything', limit: 8, batchSize: 32 } }))).toEqual([]);
  });

  it('parses an untrusted spec, or throws CONFIG_INVALID naming the fields', () => {
    const s = spec({ runId: '00000000-0000-4000-8000-000000000000' });
    expect(parseEvaluationSpec(JSON.parse(JSON.stringify(s)))).toEqual({ ...s, data: { format: 'digits', limit: 8, batchSize: 32 } });
    let err: unknown;
    try {
      parseEvaluationSpec({ ...s, saveMaps: 1000, methods: ['nope'], extra: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IceError);
    expect((err as IceError).code).toBe('CONFIG_INVALID');
    expect((err as Error).message).toMatch(/saveMaps: /);
    expect((err as Error).message).toMatch(/extra/);
  });
});
