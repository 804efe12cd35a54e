"""PyTorch DistributedDataParallel yardstick for `npm run bench:train-scaling`.

The same measurement as the project's ranks, in the framework the published ICE code uses: two
processes (this script, started twice with --rank 0 and 1), one thread each, the ViT + ICE head +
adversarial-normalization loss + AdamW of ../shared/reference/torch_ice_step.py (re-stated here:
that file builds its model at import), and DDP over gloo on loopback, which overlaps its bucketed
all-reduce with the backward pass. Rounds of the modes bench:train-scaling uses, in a rotating
order, both processes meeting at a barrier before each:
  one   rank 0 alone at the global batch G (rank 1 waits at the next barrier);
  half  rank 0 alone at G/2;
  pair  both at G/2, each its own model, no all-reduce;
  ddp   both at G/2 as one DDP group.
Each rank prints one JSON line: {"rank", "params", "runs": [{"round", "mode", "rows": [{"total": ms}]}]}.

Run by the bench with Debian's PyTorch and OpenBLAS (apt-get install python3-torch libopenblas0-pthread).
"""
import argparse
import json
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

ap = argparse.ArgumentParser()
for name, default in [('embed', 192), ('depth', 12), ('heads', 3), ('img', 224), ('patch', 16), ('classes', 10),
                      ('global_batch', 32), ('rounds', 5), ('steps', 3), ('warmup', 4), ('rank', 0), ('port', 29500)]:
    ap.add_argument('--' + name.replace('_', '-'), type=int, default=default)
a = ap.parse_args()
torch.set_num_threads(1)  # one core per rank, as the project's wasm ranks
torch.set_flush_denormal(True)
D, H, C = a.embed, a.heads, a.classes
N = (a.img // a.patch) ** 2


class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.norm1, s.norm2 = nn.LayerNorm(D, eps=1e-6), nn.LayerNorm(D, eps=1e-6)
        s.qkv, s.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        s.fc1, s.fc2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(s, x):
        b, t, _ = x.shape
        q, k, v = s.qkv(s.norm1(x)).reshape(b, t, 3, H, D // H).permute(2, 0, 3, 1, 4)  # 3 × [B, H, T, hd]
        att = (q @ k.transpose(-2, -1) * (D // H) ** -0.5).softmax(-1)  # [B, H, T, T]
        x = x + s.proj((att @ v).transpose(1, 2).reshape(b, t, D))
        return x + s.fc2(F.gelu(s.fc1(s.norm2(x))))


class IceViT(nn.Module):
    def __init__(s):
        super().__init__()
        s.patch_embed = nn.Conv2d(3, D, a.patch, a.patch)
        s.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        s.pos_embed = nn.Parameter(torch.zeros(1, N + 1, D))
        s.blocks = nn.ModuleList([Block() for _ in range(a.depth)])
        s.norm, s.head = nn.LayerNorm(D, eps=1e-6), nn.Linear(D, C)
        s.mlp_head = nn.Linear(D, C + 1, bias=False)

    def forward(s, x):
        z = s.patch_embed(x).flatten(2).transpose(1, 2)  # [B, N, D]
        z = torch.cat([s.cls_token.expand(z.shape[0], -1, -1), z], 1) + s.pos_embed
        for blk in s.blocks:
            z = blk(z)
        return s.head(s.norm(z)[:, 0]), s.mlp_head(z[:, 1:])


def ice_loss(z, y):
    """Adversarial normalization as in the released code (background = index C)."""
    fg = (z.argmax(-1) != C).float()
    yhat = (z * fg.unsqueeze(-1)).sum(1) / (fg.sum(1, keepdim=True) + 1)
    bhat = 0.5 * z.mean(1)
    gate = float(fg.mean() >= 0.1)
    return F.cross_entropy(yhat, y) + 0.025 * gate * F.cross_entropy(bhat, torch.full_like(y, C))


dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{a.port}', rank=a.rank, world_size=2)
torch.manual_seed(0)
alone = IceViT()
group = DistributedDataParallel(IceViT())  # DDP broadcasts rank 0's weights at construction
optimizers = {m: torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.05) for m in (alone, group)}
torch.manual_seed(1 + a.rank)
batches = {n: (torch.rand(n, 3, a.img, a.img), torch.randint(0, C, (n,))) for n in {a.global_batch, a.global_batch // 2}}


def step(model, n):
    x, y = batches[n]
    cls_logits, z = model(x)
    loss = ice_loss(z, y) + 0.0 * cls_logits.sum()
    opt = optimizers[model]
    opt.zero_grad()
    loss.backward()  # DDP: the all-reduce of each gradient bucket runs during the backward pass
    opt.step()


def run(mode, steps, warm=False):
    rows = []
    if mode in ('one', 'half') and a.rank == 1 and not warm:
        return rows  # rank 1 idles; rank 0 trains alone
    model = group if mode == 'ddp' else alone
    n = a.global_batch if mode == 'one' else a.global_batch // 2
    for _ in range(steps):
        t0 = time.perf_counter()
        step(model, n)
        rows.append({'total': (time.perf_counter() - t0) * 1000})
    return rows


MODES = ['one', 'half', 'pair', 'ddp']
for mode in MODES:  # both ranks warm every mode: PyTorch's first steps of a model run slow
    dist.barrier()
    run(mode, a.warmup, warm=True)
runs = []
for k in range(a.rounds):
    for i in range(len(MODES)):
        mode = MODES[(i + k) % len(MODES)]
        dist.barrier()
        runs.append({'round': k, 'mode': mode, 'rows': run(mode, a.steps)})
dist.barrier()
print(json.dumps({'rank': a.rank, 'params': sum(p.numel() for p in alone.parameters()), 'runs': runs}), flush=True)
dist.destroy_process_group()
