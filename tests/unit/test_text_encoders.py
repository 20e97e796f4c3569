"""Text encoders: shapes, masks, spans, markers, missing reports, saving; all tiny."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medfuse.errors import ConfigError, ModelError
from medfuse.models.encoders.text import (
    CLS,
    NO_SPAN,
    SPECIAL_TOKENS,
    FindingsTextEncoder,
    HFLocalTextEncoder,
    ReportTokenizer,
    TextEncoder,
    TextEncoding,
    Vocabulary,
    text_encoder_from_config,
)
from medfuse.registry import text_encoders
from medfuse.text.lexicon import FINDING_CODES
from medfuse.text.pipeline import parse_report

REPORTS = [
    "FINDINGS: No pneumothorax. Mild cardiomegaly.\nIMPRESSION: Possible right lower lobe pneumonia.",
    "History of pneumonia. 12 mm nodule.",
    None,
    "",
]
TINY = {name: dict(text_encoders.metadata(name)["tiny"]) for name in ("transformer", "bilstm")}


@pytest.fixture(scope="module")
def tokenizer():
    return ReportTokenizer(max_length=40)


@pytest.fixture(scope="module")
def reports():
    return [parse_report(r) if r else r for r in REPORTS]


def make(name, tokenizer):
    torch.manual_seed(0)
    return text_encoders.create(name, tokenizer=tokenizer, **TINY[name]).eval()


def test_registry_has_the_four_encoders():
    assert {"transformer", "bilstm", "findings", "hf_local"} <= set(text_encoders.names())


# -- tokenizer -----------------------------------------------------------------------------------
def test_tokenizer_markers_spans_and_missing(tokenizer, reports):
    batch = tokenizer(reports)
    assert batch.input_ids.shape == batch.mask.shape and batch.input_ids.dtype == torch.long
    assert batch.present.tolist() == [True, True, False, False]
    assert batch.mask.sum(1).tolist()[2:] == [1, 1]  # missing: [CLS] only
    toks, spans = batch.tokens[0], batch.spans[0]
    assert toks[0] == CLS and spans[0] == NO_SPAN
    text = reports[0].text
    # a status marker right before each finding, carrying the finding's span
    i = toks.index("[NEG]")
    assert toks[i + 1] == "pneumothorax" and spans[i] == spans[i + 1]
    assert text[slice(*spans[i])] == "pneumothorax"
    assert toks[toks.index("[POS]") + 1] == "cardiomegaly"
    assert toks[toks.index("[UNC]") + 1] == "pneumonia"
    # every word token's span points at that word (lower-cased)
    for t, (a, b) in zip(toks, spans, strict=False):
        if t not in SPECIAL_TOKENS:
            assert text[a:b].lower() == t
    # padded positions have no span
    assert all(sp == NO_SPAN for sp in batch.spans[2][1:])
    hist = tokenizer([reports[1]]).tokens[0]
    assert hist[hist.index("pneumonia") - 2 : hist.index("pneumonia")] == ["[POS]", "[HIST]"]
    assert "00" in hist  # digits folded


def test_plain_strings_are_parsed_for_markers(tokenizer):
    batch = tokenizer(["No pleural effusion."])
    assert "[NEG]" in batch.tokens[0]
    no_markers = ReportTokenizer(tokenizer.vocab, markers=False)(["No pleural effusion."])
    assert not set(no_markers.tokens[0]) & {"[NEG]", "[POS]", "[UNC]"}


def test_truncation_to_max_length():
    tok = ReportTokenizer(max_length=8)
    batch = tok(["No pneumothorax. " * 50])
    assert batch.input_ids.shape == (1, 8) and batch.mask.all()


def test_vocabulary_build_hash_and_state(tmp_path):
    vocab = Vocabulary.build([["a", "b", "a"], ["a", "c"]], min_freq=2, hash_buckets=16)
    assert "a" in vocab and "b" not in vocab
    assert len(vocab) == len(SPECIAL_TOKENS) + 1 + 16
    assert vocab.index("never-seen") == vocab.index("never-seen") >= len(SPECIAL_TOKENS) + 1
    assert Vocabulary(["x"]).index("y") == Vocabulary(["x"]).stoi["[UNK]"]
    vocab.save(tmp_path / "v.json")
    back = Vocabulary.load(tmp_path / "v.json")
    assert back.itos == vocab.itos and back.hash_buckets == 16
    with pytest.raises(ModelError):
        Vocabulary.from_dict({"tokens": [], "specials": ["[PAD]"]})


def test_tokenizer_from_reports_and_json_state(tmp_path):
    tok = ReportTokenizer.from_reports(
        ["Rare wordzz here.", "Rare wordzz again."], min_freq=2, max_length=20
    )
    assert "wordzz" in tok.vocab and "pneumothorax" in tok.vocab  # corpus + seed words
    tok.save(tmp_path / "tok.json")
    back = ReportTokenizer.load(tmp_path / "tok.json")
    assert back.to_dict() == tok.to_dict()
    assert torch.equal(back(["Rare wordzz."]).input_ids, tok(["Rare wordzz."]).input_ids)
    with pytest.raises(ModelError):
        ReportTokenizer.load(tmp_path / "missing.json")


# -- token encoders ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["transformer", "bilstm"])
def test_token_encoder_shapes_and_masks(name, tokenizer, reports):
    enc = make(name, tokenizer)
    out = enc.encode(reports)
    assert isinstance(out, TextEncoding)
    B, T = len(reports), out.mask.shape[1]
    assert out.tokens.shape == (B, T, 16) and out.pooled.shape == (B, 16) and out.dim == 16
    assert out.mask.dtype == torch.bool and out.present.tolist() == [True, True, False, False]
    assert len(out.spans) == B and all(len(s) == T for s in out.spans)
    assert torch.all(out.tokens[~out.mask] == 0)  # padding is zero
    assert torch.all(out.pooled[2:] == 0)  # missing reports pool to zero
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()


@pytest.mark.parametrize("name", ["transformer", "bilstm"])
def test_padding_does_not_change_a_report(name, tokenizer, reports):
    enc = make(name, tokenizer)
    alone = enc.encode([reports[1]])
    batched = enc.encode([reports[1], reports[0]])
    n = int(alone.mask.sum())
    assert torch.allclose(alone.pooled[0], batched.pooled[0], atol=1e-5)
    assert torch.allclose(alone.tokens[0, :n], batched.tokens[0, :n], atol=1e-5)


@pytest.mark.parametrize("name", ["transformer", "bilstm"])
def test_token_encoder_trains(name, tokenizer, reports):
    enc = make(name, tokenizer).train()
    out = enc.encode(reports[:2])
    out.pooled.sum().backward()
    assert enc.embed.weight.grad is not None and enc.embed.weight.grad.abs().sum() > 0


def test_encoder_config_errors(tokenizer):
    with pytest.raises(ConfigError, match="divisible"):
        text_encoders.create("transformer", tokenizer=tokenizer, dim=10, heads=3)
    with pytest.raises(ConfigError, match="even"):
        text_encoders.create("bilstm", tokenizer=tokenizer, dim=15)
    with pytest.raises(ConfigError, match="pooling"):
        text_encoders.create("transformer", tokenizer=tokenizer, dim=16, heads=2, pooling="max")
    with pytest.raises(ConfigError, match="Report, str or None"):
        tokenizer([3])


# -- findings encoder ----------------------------------------------------------------------------
def test_findings_encoder_is_the_label_vector(reports):
    enc = text_encoders.create("findings")
    out = enc.encode(reports)
    C = len(FINDING_CODES)
    assert out.tokens.shape == (4, C, 4 * C) and out.pooled.shape == (4, 4 * C)
    assert out.mask.all() and out.present.tolist() == [True, True, False, False]
    onehot = out.pooled[0].reshape(C, 4)
    assert torch.all(onehot.sum(1) == 1)
    labels = reports[0].labels()
    channel = {1: 0, -1: 1, 0: 2, None: 3}
    for c, code in enumerate(FINDING_CODES):
        assert onehot[c, channel[labels[code]]] == 1
    # each code token's span is its deciding mention
    code_span = out.spans[0][FINDING_CODES.index("pneumothorax")]
    assert reports[0].text[slice(*code_span)] == "pneumothorax"
    assert out.spans[0][FINDING_CODES.index("mass")] == NO_SPAN
    assert torch.all(out.pooled[2:] == 0)


def test_findings_encoder_projection_and_codes():
    enc = FindingsTextEncoder(codes=["edema", "pneumothorax"], dim=8)
    out = enc.encode(["No pneumothorax.", None])
    assert out.tokens.shape == (2, 2, 8) and out.pooled.shape == (2, 8)
    with pytest.raises(ConfigError):
        FindingsTextEncoder(codes=[])


def test_ngram_with_finding_status(reports):
    """The n-gram encoder's ``findings`` option: the tokenizer carries the parser's status of
    every code, the report vector reads it through a linear layer (gradients reach it), and the
    option survives the tokenizer's JSON state."""
    from medfuse.models.encoders.text import as_reports, finding_status

    torch.manual_seed(0)
    enc = text_encoders.create("ngram", tokenizer=ReportTokenizer(max_length=40), dim=8,
                               buckets=64, findings=True)  # fmt: skip
    assert enc.tokenizer.finding_features
    batch = enc.tokenize(reports)
    want, _ = finding_status(as_reports(reports), FINDING_CODES)
    assert torch.equal(batch.findings, want)
    out = enc(batch)
    assert out.pooled.shape == (4, 8) and torch.all(out.pooled[2:] == 0)
    out.pooled[:2].sum().backward()
    assert enc.find_proj.weight.grad.abs().sum() > 0
    back = ReportTokenizer.from_dict(json.loads(json.dumps(enc.tokenizer.to_dict())))
    assert back.finding_codes == tuple(FINDING_CODES)  # kept: a grown lexicon changes nothing
    assert torch.equal(back(reports).findings, want)
    with pytest.raises(ConfigError, match="finding status"):
        enc(ReportTokenizer(max_length=40)(reports))


# -- saving --------------------------------------------------------------------------------------
def save_text_encoder(encoder: TextEncoder, folder: Path) -> Path:
    """A text encoder alone on disk: ``config.json`` (tokenizer and vocabulary inside) and
    ``weights.safetensors`` (a saved model keeps both in its card and weights instead)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    if isinstance(encoder, HFLocalTextEncoder):  # the checkpoint stays where it is
        state = {k: v for k, v in state.items() if not k.startswith("model.")}
    save_file(state, str(folder / "weights.safetensors"))
    (folder / "config.json").write_text(json.dumps(encoder.config(), indent=2))
    return folder


def load_text_encoder(folder: Path) -> TextEncoder:
    """Inverse of :func:`save_text_encoder`."""
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read text encoder config: {exc}", path=folder) from None
    encoder = text_encoder_from_config(config)
    weights = folder / "weights.safetensors"
    if not weights.is_file():
        raise ModelError("weights.safetensors missing", path=folder)
    missing, unexpected = encoder.load_state_dict(load_file(str(weights)), strict=False)
    if not isinstance(encoder, HFLocalTextEncoder) and (missing or unexpected):
        raise ModelError(f"weights do not match (missing {missing}, unexpected {unexpected})")
    return encoder


@pytest.mark.parametrize("name", ["transformer", "bilstm", "findings"])
def test_save_and_load_round_trip(name, tokenizer, reports, tmp_path):
    enc = make(name, tokenizer) if name in TINY else text_encoders.create("findings", dim=8).eval()
    save_text_encoder(enc, tmp_path / name)
    cfg = json.loads((tmp_path / name / "config.json").read_text())
    assert cfg["name"] == name
    if name in TINY:
        assert cfg["tokenizer"]["vocab"]["tokens"] == tokenizer.vocab.to_dict()["tokens"]
    back = load_text_encoder(tmp_path / name).eval()
    a, b = enc.encode(reports), back.encode(reports)
    assert torch.allclose(a.pooled, b.pooled, atol=1e-6) and a.spans == b.spans
    assert text_encoder_from_config(cfg).config() == enc.config()


def test_load_errors(tmp_path):
    with pytest.raises(ModelError, match="config"):
        load_text_encoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"name": "findings", "kwargs": {}}))
    with pytest.raises(ModelError, match="weights"):
        load_text_encoder(tmp_path)
    with pytest.raises(ConfigError, match="no name"):  # one from_config for every registry
        text_encoder_from_config({})


# -- hf_local ------------------------------------------------------------------------------------
def test_hf_local_missing_path_is_clear(tmp_path):
    with pytest.raises(ModelError, match="config.json missing") as err:
        text_encoders.create("hf_local", path=tmp_path / "nowhere")
    assert "nowhere" in str(err.value)
    with pytest.raises(ModelError, match="needs path"):
        text_encoders.create("hf_local")


def test_hf_local_without_the_extra_is_clear(tmp_path):
    pytest.importorskip("torch")
    try:
        import transformers  # noqa: F401
    except ImportError:
        (tmp_path / "config.json").write_text("{}")
        with pytest.raises(ModelError, match=r"medfuse\[hf\]"):
            text_encoders.create("hf_local", path=tmp_path)
    else:
        pytest.skip("transformers is installed; covered by test_hf_local_tiny_checkpoint")


def test_hf_local_tiny_checkpoint(tmp_path):
    transformers = pytest.importorskip("transformers", reason="optional extra 'hf' not installed")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "pneumo", "##thorax", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    tok = transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    cfg = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    transformers.BertModel(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    enc = text_encoders.create("hf_local", path=tmp_path, dim=8).eval()
    out = enc.encode(["No pneumothorax.", None])
    assert out.pooled.shape == (2, 8) and out.present.tolist() == [True, False]
    assert out.tokens.shape[:2] == out.mask.shape
    save_text_encoder(enc, tmp_path / "saved")
    assert load_text_encoder(tmp_path / "saved").dim == 8
