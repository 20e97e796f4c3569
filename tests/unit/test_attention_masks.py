"""Key padding given as a boolean attention mask: the same attention as PyTorch's
``key_padding_mask``, without importing sympy (torch's check of that argument does)."""

from __future__ import annotations

import subprocess
import sys

import torch

from medfuse.models.masks import padding_attn_mask


def test_same_attention_as_key_padding_mask_in_eval_and_training():
    torch.manual_seed(0)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[0, 3:] = True
    pad[2, 1:] = True
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    q, kv = torch.randn(3, 7, 16), torch.randn(3, 5, 16)
    a = mha(q, kv, kv, attn_mask=padding_attn_mask(pad, 4, 7), average_attn_weights=False)
    b = mha(q, kv, kv, key_padding_mask=pad, average_attn_weights=False)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    layer = torch.nn.TransformerEncoderLayer(16, 4, 64, 0.1, batch_first=True, norm_first=True)
    enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    x = torch.randn(3, 5, 16)
    for training in (False, True):
        enc.train(training)
        torch.manual_seed(1)
        a = enc(x, mask=padding_attn_mask(pad, 4, 5))
        torch.manual_seed(1)
        assert torch.equal(a, enc(x, src_key_padding_mask=pad))


def test_a_fusion_prediction_imports_no_sympy():
    # the preset reads a transformer text encoder and fuses with cross-attention: both paths
    code = (
        "import sys, torch\n"
        "from medfuse.models.model import create_model\n"
        "m = create_model('chest_ct_fusion_tiny').eval()\n"
        "batch = m.tokenize(['No effusion. Small nodule.', 'Normal.'])\n"
        "with torch.no_grad():\n"
        "    m(image=torch.zeros(2, 3, 32, 32, 32), text=batch)\n"
        "print('sympy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
