"""Writes libs/ice-core/src/testing/fixtures/golden-micro-grads.safetensors: PyTorch (float64) gradients of
the ICE loss and of a classification loss w.r.t. every parameter of golden-micro, for the golden input.

Run from the repository root with Debian's PyTorch (apt-get install python3-torch):
    /usr/bin/python3 tools/make_grad_fixture.py ../shared/golden
The model is timm's ViT written out (as ../shared/reference/torch_ice_step.py does) so that no timm
install is needed; the loss is the released code's (official variant) with the golden hard targets.
"""
import json, struct, sys, os
import torch, torch.nn.functional as F

golden = sys.argv[1] if len(sys.argv) > 1 else '../shared/golden'
out = 'libs/ice-core/src/testing/fixtures/golden-micro-grads.safetensors'

def read_st(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop('__metadata__', {})
    ts = {}
    for k, v in header.items():
        a, b = v['data_offsets']
        dt = {'F32': torch.float32, 'I32': torch.int32}[v['dtype']]
        ts[k] = torch.frombuffer(bytearray(data[a:b]), dtype=dt).reshape(v['shape']).clone()
    return ts, meta

def write_st(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        b = t.contiguous().to(torch.float32).numpy().tobytes()
        header[k] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b); off += len(b)
    header['__metadata__'] = meta
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h); f.write(b''.join(blobs))

W, _ = read_st(os.path.join(golden, 'golden-micro.safetensors'))
io, _ = read_st(os.path.join(golden, 'golden-micro-io.safetensors'))
P = {k: v.double().requires_grad_(True) for k, v in W.items()}
x = io['input'].double()
D, H, depth, C = 64, 2, 2, 10

def ln(t, p):
    return F.layer_norm(t, (D,), P[p + '.weight'], P[p + '.bias'], eps=1e-6)

def forward(x):
    B = x.shape[0]
    t = F.conv2d(x, P['patch_embed.proj.weight'], P['patch_embed.proj.bias'], stride=8).flatten(2).transpose(1, 2)
    t = torch.cat([P['cls_token'].expand(B, -1, -1), t], 1) + P['pos_embed']
    for i in range(depth):
        p = f'blocks.{i}'
        h = ln(t, p + '.norm1')
        T = h.shape[1]
        q, k, v = F.linear(h, P[p + '.attn.qkv.weight'], P[p + '.attn.qkv.bias']).reshape(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1) * (D // H) ** -0.5).softmax(-1)
        t = t + F.linear((a @ v).transpose(1, 2).reshape(B, T, D), P[p + '.attn.proj.weight'], P[p + '.attn.proj.bias'])
        h = ln(t, p + '.norm2')
        t = t + F.linear(F.gelu(F.linear(h, P[p + '.mlp.fc1.weight'], P[p + '.mlp.fc1.bias'])), P[p + '.mlp.fc2.weight'], P[p + '.mlp.fc2.bias'])
    cls = F.linear(ln(t, 'norm')[:, 0], P['head.weight'], P['head.bias'])
    z = F.linear(t[:, 1:], P['mlp_head.weight'])
    return cls, z

def ice_official(z, y):
    fg = (z.argmax(-1) != C).double()
    yhat = (z * fg.unsqueeze(-1)).sum(1) / (fg.sum(1, keepdim=True) + 1)
    bhat = 0.5 * z.mean(1)
    l_ice = F.cross_entropy(yhat, y)
    l_bg = F.cross_entropy(bhat, torch.full_like(y, C))
    gate = float(fg.mean() >= 0.1)
    return l_ice + 0.025 * gate * l_bg

y = torch.tensor([1, 7])
cls, z = forward(x)
loss_ice = ice_official(z, y)
g_ice = torch.autograd.grad(loss_ice, list(P.values()), allow_unused=True)
cls, z = forward(x)
loss_cls = F.cross_entropy(cls, y)
g_cls = torch.autograd.grad(loss_cls, list(P.values()), allow_unused=True)
tensors = {}
for (name, p), gi, gc in zip(P.items(), g_ice, g_cls):
    tensors['ice.' + name] = gi if gi is not None else torch.zeros_like(p)
    tensors['cls.' + name] = gc if gc is not None else torch.zeros_like(p)
write_st(out, tensors, {'loss_ice': repr(loss_ice.item()), 'loss_cls': repr(loss_cls.item()), 'targets': '[1, 7]', 'torch': torch.__version__,
                        'note': 'd loss / d param in PyTorch layout (Linear [out,in], conv OIHW), float64 rounded to float32'})
print(out, 'loss_ice', loss_ice.item(), 'loss_cls', loss_cls.item())
