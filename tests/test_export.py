"""Export to Hugging Face: transformers loads the folder and its logits match tweetlm's on real posts."""

from __future__ import annotations

import pytest
import torch

from tweetlm.inference.export_hf import export_hf
from tweetlm.model.config import ModelConfig
from tweetlm.model.gpt import GPT
from tweetlm.tokenizer.bpe import TokenizerConfig, train_tokenizer
from tweetlm.training.checkpoint import save_checkpoint

transformers = pytest.importorskip("transformers", reason="the export test needs transformers (dev extra)")

POSTS = [
    "Then & Now. VILO @ Walt Disney Magic Kingdom",
    "@united no cmfao. #travel \U0001f602\U0001f525 https://t.co/abc",
    "Selamat pagi semua, semoga hari ini menyenangkan \U0001f64f",
    "\u0645\u0631\u062d\u0628\u0627 #\u0645\u0635\u0631",
]


@pytest.mark.parametrize("tied, kv", [(True, 2), (False, 4)])
def test_transformers_logits_match(tmp_path, tied, kv):
    tok = train_tokenizer(POSTS * 30, TokenizerConfig(vocab_size=300))
    cfg = ModelConfig(
        vocab_size=tok.vocab_size, n_layer=2, n_embd=64, n_head=4, n_kv_head=kv, max_seq_len=64, tie_embeddings=tied
    )
    model = GPT.build(cfg, seed=3)
    with torch.no_grad():  # non-trivial norms, so a misplaced norm weight shows up
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    tok.save(tmp_path / "tokenizer.json")
    opt = torch.optim.AdamW(model.parameters())
    ck = save_checkpoint(tmp_path / "ck", 1, model, opt, {}, {"model": cfg.__dict__}, tmp_path / "tokenizer.json")
    out = export_hf(ck, tmp_path / "hf")

    hf = transformers.AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    model.eval()
    for post in POSTS:
        ids = [tok.bos_id, *tok.encode(post)]
        assert [hf_tok.bos_token_id, *hf_tok(post, add_special_tokens=False)["input_ids"]] == ids
        x = torch.tensor([ids])
        with torch.no_grad():
            ours, theirs = model(x), hf(x).logits
        assert (ours - theirs).abs().max().item() < 1e-4
    assert hf.config.tie_word_embeddings == tied
