"""Writes libs/ice-core/src/testing/fixtures/golden-micro-lrp.safetensors: the LRP-based baselines of Chefer et al.
(Transformer-Explainability, CVPR 2021) and the two token-pruning inference modes on golden-micro, in float64.

Run from the repository root with Debian's PyTorch (apt-get install python3-torch):
    /usr/bin/python3 tools/make_lrp_golden.py ../shared/golden

This is an independent PyTorch formulation of the reference ALGORITHM as read from Chefer's code (see
../shared/notes/baselines-and-protocols.md §1, §4), not a copy of it: every z-rule below is evaluated the
way the reference evaluates it (recompute the op, S = R / Z with the reference's stabiliser, C = autograd of
Z against S, R_in = x * C), while the TypeScript implementation uses closed forms; the test compares the two.

Relevance rules (alpha = 1, beta = 0 everywhere):
  rules 'ours' (modules/layers_ours.py, used by "transformer attribution"):
    Linear     sign-matched pairs with ONE denominator: R_j = sum_k (x+_j w+_jk + x-_j w-_jk) / (Z1_k + Z2_k) R_k, no bias
    Add        z-rule, then each branch rescaled so that its mass is |its raw sum| / (|a| + |b|) of sum(R)
  rules 'lrp' (modules/layers_lrp.py, used by partial LRP, "last_layer" of ViT_orig_LRP):
    Linear     the same pairs with SEPARATE denominators: R_j = sum_k (x+_j w+_jk / Z1_k + x-_j w-_jk / Z2_k) R_k
    Add        plain z-rule (no rescaling)
  both:
    GELU, LayerNorm, Softmax, Dropout: identity; Clone: R = x (R1/x + R2/x); CLS pooling: z-rule (R lands on token 0)
    A @ V and Q @ K^T: LRP-0 (z-rule on both operands), each operand's share halved (Attention.relprop)
    starting relevance: one-hot of the target class at the CLS-head logits (not the logit value)
  transformer attribution: Abar_l = mean_h clamp(dy_c/dA_l * R_A_l, 0); C = (I + Abar_{L-1}) ... (I + Abar_s) with no
    row normalisation; map = C[0, 1:]. R_A_l is the HALVED relevance at the post-softmax attention.
  partial LRP: map = mean_h clamp(R_A_{L-1}, 0)[0, 1:] with the 'lrp' rules.

Cross-checked once, outside the repository, against the reference classes themselves run on golden-micro in
float64 (Chefer's ViT_LRP / ViT_orig_LRP with a 3-pattern einops stand-in, final norm eps set to 1e-6; EViT's
evit.EViT with keep_rate (0.5, 0.5) and fuse_token): every map, R_A and the EViT logits agree to float32 rounding
(largest relative difference 5e-8). Nothing of that code is in this repository.

Token pruning (inference), keep rate rho at the given blocks, after the block's attention residual:
  k = ceil(rho * (N - 1)) tokens kept of the N - 1 non-CLS tokens (a previous fused token counts), in index order;
  evit: score = mean over heads of the CLS attention row; the others fused as sum_i a_i x_i (appended);
  ice:  score = max over classes of the ICE logit minus the background logit (ICE head on the block's current
        non-CLS tokens); the others dropped (no fused token).
  The MLP then runs on the reduced set; logits = head(norm(t)[:, 0]); token index -1 = the fused token.
"""
import json, math, struct, sys, os
import torch, torch.nn.functional as F

golden = sys.argv[1] if len(sys.argv) > 1 else '../shared/golden'
out = 'libs/ice-core/src/testing/fixtures/golden-micro-lrp.safetensors'
torch.set_default_dtype(torch.float64)


def read_st(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop('__metadata__', None)
    ts = {}
    for k, v in header.items():
        a, b = v['data_offsets']
        dt = {'F32': torch.float32, 'I32': torch.int32}[v['dtype']]
        ts[k] = torch.frombuffer(bytearray(data[a:b]), dtype=dt).reshape(v['shape']).clone()
    return ts


def write_st(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        if t.dtype in (torch.int32, torch.int64):
            b, dt = t.contiguous().to(torch.int32).numpy().tobytes(), 'I32'
        else:
            b, dt = t.detach().contiguous().to(torch.float32).numpy().tobytes(), 'F32'
        header[k] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b); off += len(b)
    header['__metadata__'] = meta
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h); f.write(b''.join(blobs))


W = {k: v.double() for k, v in read_st(os.path.join(golden, 'golden-micro.safetensors')).items()}
io = read_st(os.path.join(golden, 'golden-micro-io.safetensors'))
X = io['input'].double()
D, H, DEPTH, C, EPS = 64, 2, 2, 10, 1e-6
HD = D // H


# ------------------------------------------------------------------ forward, recording every op's inputs

def ln(t, p):
    return F.layer_norm(t, (D,), W[p + '.weight'], W[p + '.bias'], eps=EPS)


def forward(x):
    """One image batch [1,3,32,32]. Returns logits and a per-block record of every op's inputs; A_l keep their grads."""
    t = F.conv2d(x, W['patch_embed.proj.weight'], W['patch_embed.proj.bias'], stride=8).flatten(2).transpose(1, 2)
    t = torch.cat([W['cls_token'], t], 1) + W['pos_embed']  # [1,17,64]
    rec = []
    for i in range(DEPTH):
        p = f'blocks.{i}'
        r = {'t_in': t}
        r['h1'] = ln(t, p + '.norm1')
        T = t.shape[1]
        qkv = F.linear(r['h1'], W[p + '.attn.qkv.weight'], W[p + '.attn.qkv.bias'])
        q, k, v = qkv.reshape(1, T, 3, H, HD).permute(2, 0, 3, 1, 4)  # each [1,H,T,HD]
        A = torch.softmax(torch.einsum('bhid,bhjd->bhij', q, k) * HD ** -0.5, -1)
        A.retain_grad()
        o = torch.einsum('bhij,bhjd->bhid', A, v)
        r.update(q=q, k=k, v=v, A=A)
        r['om'] = o.transpose(1, 2).reshape(1, T, D)
        r['a'] = F.linear(r['om'], W[p + '.attn.proj.weight'], W[p + '.attn.proj.bias'])
        t = t + r['a']
        r['t_mid'] = t
        r['h2'] = ln(t, p + '.norm2')
        r['f'] = F.gelu(F.linear(r['h2'], W[p + '.mlp.fc1.weight'], W[p + '.mlp.fc1.bias']))
        r['m'] = F.linear(r['f'], W[p + '.mlp.fc2.weight'], W[p + '.mlp.fc2.bias'])
        t = t + r['m']
        rec.append(r)
    cls = ln(t, 'norm')[:, 0]  # [1,64]
    logits = F.linear(cls, W['head.weight'], W['head.bias'])
    return logits, rec, cls


# ------------------------------------------------------------------ the rules

def safe_divide(a, b):
    # The reference stabiliser: den = clamp(b, min=eps) + clamp(b, max=eps) (= b + eps), 0 where b == 0.
    den = b.clamp(min=1e-9) + b.clamp(max=1e-9)
    den = den + den.eq(0).double() * 1e-9
    return a / den * b.ne(0).double()


def leaf(x):
    return x.detach().clone().requires_grad_(True)


def z_rule(fn, xs, R):
    """LRP-0 through fn(*xs): Z recomputed, S = R / Z, C = dZ/dx . S, R_x = x * C for every operand."""
    xs = [leaf(x) for x in xs]
    Z = fn(*xs)
    S = safe_divide(R, Z).detach()
    Cs = torch.autograd.grad(Z, xs, S)
    return [(x * c).detach() for x, c in zip(xs, Cs)]


def linear_rule(x, weight, R, rules):
    """alpha = 1, beta = 0: only the activator pairs (x+, w+) and (x-, w-); the bias takes no relevance."""
    px, nx = leaf(x.clamp(min=0)), leaf(x.clamp(max=0))
    pw, nw = weight.clamp(min=0), weight.clamp(max=0)
    Z1, Z2 = F.linear(px, pw), F.linear(nx, nw)
    if rules == 'ours':
        S1 = S2 = safe_divide(R, Z1 + Z2)
    else:
        S1, S2 = safe_divide(R, Z1), safe_divide(R, Z2)
    C1 = torch.autograd.grad(Z1, px, S1.detach())[0]
    C2 = torch.autograd.grad(Z2, nx, S2.detach())[0]
    return (px * C1 + nx * C2).detach()


def add_rule(x0, x1, R, rules):
    a, b = z_rule(lambda u, v: u + v, [x0, x1], R)
    if rules == 'ours':
        sa, sb, total = a.sum(), b.sum(), R.sum()
        fa = safe_divide(sa.abs(), sa.abs() + sb.abs()) * total
        fb = safe_divide(sb.abs(), sa.abs() + sb.abs()) * total
        a = a * safe_divide(fa, a.sum())
        b = b * safe_divide(fb, b.sum())
    return a, b


def clone_rule(x, R1, R2):
    return x * (safe_divide(R1, x) + safe_divide(R2, x))


def relevance(rec, cls, target, rules):
    """One backward relevance pass from the CLS logits to block 0's input; returns the halved R_A of every block."""
    R = torch.zeros(1, C); R[0, target] = 1.0
    R = linear_rule(cls, W['head.weight'], R, rules)  # [1,64] at the normed CLS feature
    (R,) = z_rule(lambda c: c, [cls], R)  # CLS pooling (index_select): R lands on token 0 ...
    R_tok = torch.zeros_like(rec[-1]['t_in']); R_tok[:, 0] = R  # ... of the final norm's output; LayerNorm: identity
    R = R_tok
    R_A = [None] * DEPTH
    for i in reversed(range(DEPTH)):
        p, r = f'blocks.{i}', rec[i]
        T = r['t_in'].shape[1]
        R_res, R_m = add_rule(r['t_mid'], r['m'], R, rules)
        R_f = linear_rule(r['f'], W[p + '.mlp.fc2.weight'], R_m, rules)  # GELU: identity
        R_h2 = linear_rule(r['h2'], W[p + '.mlp.fc1.weight'], R_f, rules)  # norm2: identity
        R = clone_rule(r['t_mid'], R_res, R_h2)
        R_res, R_a = add_rule(r['t_in'], r['a'], R, rules)
        R_om = linear_rule(r['om'], W[p + '.attn.proj.weight'], R_a, rules)
        R_o = R_om.reshape(1, T, H, HD).transpose(1, 2)  # 'b n (h d) -> b h n d'
        RA, Rv = z_rule(lambda a, v: torch.einsum('bhij,bhjd->bhid', a, v), [r['A'], r['v']], R_o)
        RA, Rv = RA / 2, Rv / 2
        R_A[i] = RA  # softmax: identity, so this is also the relevance at the scores q k^T
        Rq, Rk = z_rule(lambda q, k: torch.einsum('bhid,bhjd->bhij', q, k), [r['q'], r['k']], RA)
        Rq, Rk = Rq / 2, Rk / 2
        R_qkv = torch.stack([Rq, Rk, Rv]).permute(1, 3, 0, 2, 4).reshape(1, T, 3 * D)  # 'qkv b h n d -> b n (qkv h d)'
        R_h1 = linear_rule(r['h1'], W[p + '.attn.qkv.weight'], R_qkv, rules)  # norm1: identity
        R = clone_rule(r['t_in'], R_res, R_h1)
    return R_A, R


def explain(x, target=None):
    logits, rec, cls = forward(x.clone().requires_grad_(True))  # a leaf needing grad, so that A_l keeps its .grad
    c = int(logits.argmax(-1)) if target is None else target
    logits[0, c].backward()
    grads = [r['A'].grad.detach() for r in rec]
    R_A, R_in = relevance(rec, cls.detach(), c, 'ours')
    abar = [(g[0] * ra[0]).clamp(min=0).mean(0) for g, ra in zip(grads, R_A)]  # [T,T] each
    ta = {}
    for s in range(DEPTH):
        joint = abar[s] + torch.eye(abar[s].shape[0])
        for i in range(s + 1, DEPTH):
            joint = (abar[i] + torch.eye(abar[i].shape[0])) @ joint
        ta[s] = joint[0, 1:]
    R_A_lrp, _ = relevance(rec, cls.detach(), c, 'lrp')
    partial = R_A_lrp[-1][0].clamp(min=0).mean(0)[0, 1:]
    return dict(target=c, logit=float(logits[0, c]), ta=ta, partial=partial, R_A=R_A, R_A_lrp=R_A_lrp, R_in=R_in)


# ------------------------------------------------------------------ token pruning

def ice_score(tokens):
    z = F.linear(tokens, W['mlp_head.weight'])  # [1,n,11], background last
    return z[..., :C].max(-1).values - z[..., C]


def pruned_forward(x, mode, rho, locations, fuse):
    t = F.conv2d(x, W['patch_embed.proj.weight'], W['patch_embed.proj.bias'], stride=8).flatten(2).transpose(1, 2)
    t = torch.cat([W['cls_token'], t], 1) + W['pos_embed']
    index = torch.arange(t.shape[1] - 1)  # original patch of each non-CLS token; -1 = fused
    counts = []
    for i in range(DEPTH):
        p = f'blocks.{i}'
        T = t.shape[1]
        h = ln(t, p + '.norm1')
        q, k, v = F.linear(h, W[p + '.attn.qkv.weight'], W[p + '.attn.qkv.bias']).reshape(1, T, 3, H, HD).permute(2, 0, 3, 1, 4)
        A = torch.softmax(q @ k.transpose(-2, -1) * HD ** -0.5, -1)
        t = t + F.linear((A @ v).transpose(1, 2).reshape(1, T, D), W[p + '.attn.proj.weight'], W[p + '.attn.proj.bias'])
        keep = math.ceil(rho * (T - 1))
        if i in locations and keep < T - 1:
            cls_attn = A[:, :, 0, 1:].mean(1)[0]  # [T-1]
            score = cls_attn if mode == 'evit' else ice_score(t[:, 1:])[0]
            top = torch.topk(score, keep).indices.sort().values
            rest = torch.tensor([j for j in range(T - 1) if j not in set(top.tolist())], dtype=torch.long)
            parts, new_index = [t[:, :1], t[:, 1:][:, top]], [index[top]]
            if fuse:
                parts.append((t[:, 1:][:, rest] * cls_attn[rest].unsqueeze(-1)).sum(1, keepdim=True))
                new_index.append(torch.tensor([-1]))
            t, index = torch.cat(parts, 1), torch.cat(new_index)
        t = t + F.linear(F.gelu(F.linear(ln(t, p + '.norm2'), W[p + '.mlp.fc1.weight'], W[p + '.mlp.fc1.bias'])),
                         W[p + '.mlp.fc2.weight'], W[p + '.mlp.fc2.bias'])
        counts.append(t.shape[1] - 1)
    logits = F.linear(ln(t, 'norm')[:, 0], W['head.weight'], W['head.bias'])
    z = F.linear(t[:, 1:], W['mlp_head.weight'])
    return logits[0], index, counts, z[0]


# ------------------------------------------------------------------ the fixture

tensors, meta = {}, {}
cases = [explain(X[b:b + 1]) for b in range(2)]
given = [explain(X[b:b + 1], target=4) for b in range(2)]
tensors['target_class'] = torch.tensor([c['target'] for c in cases], dtype=torch.int32)
tensors['target_logit'] = torch.tensor([c['logit'] for c in cases])
for s in range(DEPTH):
    tensors[f'transformer_attribution.s{s}'] = torch.stack([c['ta'][s] for c in cases])  # [2,16]
    tensors[f'transformer_attribution.s{s}.class4'] = torch.stack([c['ta'][s] for c in given])
tensors['partial_lrp'] = torch.stack([c['partial'] for c in cases])  # [2,16]
tensors['partial_lrp.class4'] = torch.stack([c['partial'] for c in given])
for l in range(DEPTH):
    tensors[f'R_A.ours.{l}'] = torch.cat([c['R_A'][l] for c in cases])  # [2,H,17,17]
tensors[f'R_A.lrp.{DEPTH - 1}'] = torch.cat([c['R_A_lrp'][DEPTH - 1] for c in cases])
tensors['R_tokens_in.ours'] = torch.cat([c['R_in'] for c in cases])  # [2,17,64] relevance at block 0's input

PRUNE = {'evit': ('evit', 0.5, {0, 1}, True), 'ice': ('ice', 0.5, {0, 1}, False), 'ice_fused': ('ice', 0.5, {0, 1}, True)}
for name, (mode, rho, locs, fuse) in PRUNE.items():
    runs = [pruned_forward(X[b:b + 1], mode, rho, locs, fuse) for b in range(2)]
    tensors[f'prune.{name}.logits'] = torch.stack([r[0] for r in runs])  # [2,10]
    tensors[f'prune.{name}.index'] = torch.stack([r[1] for r in runs]).to(torch.int32)  # [2, n]
    tensors[f'prune.{name}.counts'] = torch.tensor(runs[0][2], dtype=torch.int32)  # non-CLS tokens after each block
    tensors[f'prune.{name}.z'] = torch.stack([r[3] for r in runs])  # [2, n, 11] ICE head on the surviving tokens
    meta[f'prune.{name}'] = json.dumps({'mode': mode, 'keepRate': rho, 'locations': sorted(locs), 'fuse': fuse})

meta.update({'torch': torch.__version__, 'source': 'tools/make_lrp_golden.py', 'input': 'golden-micro-io input, each image on its own',
             'note': 'float64 computation rounded to float32; maps before any min-max; R_A halved as in Attention.relprop'})
write_st(out, tensors, meta)
print(out, {k: list(v.shape) for k, v in tensors.items()})
for b in range(2):
    print('image', b, 'target', cases[b]['target'], 'TA s1', [round(v, 5) for v in cases[b]['ta'][1].tolist()])
    print('        partial LRP', [round(v, 5) for v in cases[b]['partial'].tolist()])
print('prune counts', {k: tensors[f'prune.{k}.counts'].tolist() for k in PRUNE})
