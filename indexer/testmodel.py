"""A tiny sentence-embedding model for tests, built in code: no download, no torch.

    from indexer.testmodel import build_tiny_model
    from indexer.onnx_embedder import OnnxEmbedder

    model_dir = build_tiny_model(tmp_path)      # or the session fixture `tiny_model`
    embedder = OnnxEmbedder(model_dir)          # dimensions 64, max_tokens 64
    vectors = await embedder.embed(["cats chase mice", "dogs chase cats"])

It is a 2-layer BERT (hidden size 64) with a WordPiece tokenizer over a small
English vocabulary (BERT special tokens, lowercasing, single letters and
`##` letters so that any word tokenizes). The weights are seeded, so every
build is identical. Word embeddings are large and everything else is small,
so a text's mean-pooled vector is close to the mean of its words'
embeddings: texts that share words have similar vectors, unrelated texts
nearly orthogonal ones. It is converted by the same converter as the real
model (`indexer.minilm.convert`), so it is verified too. Building takes a few
tens of milliseconds.

`build_tiny_cross_encoder` writes a test-only cross-encoder for the rerank
stage (a hand-set word-overlap score, not a trained model; see there).
"""

from __future__ import annotations

import dataclasses
import json
import string
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from indexer.minilm import BertConfig, convert

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
WORDS = """
a an the and or but not no yes of to in on at by for with from into over under about
is are was were be been being have has had do does did will would can could should may
i you he she it we they me him her us them my your his its our their this that these those
what which who when where why how all any each every some many few more most other such
one two three four five six seven eight nine ten first last next new old good bad big small
long short high low fast slow hot cold red green blue black white
cat cats dog dogs mouse mice bird birds fish horse cow sheep animal animals pet pets
chase chases eat eats sleep sleeps run runs swim swims fly flies bark barks
food pizza pasta cheese bread apple apples banana fruit coffee tea milk water soup rice
car cars train trains plane planes boat ship bike road city town country river sea
house room door window table chair kitchen garden school book books paper page pages
gateway gateways model models token tokens vector vectors index search query document
documents chunk chunks dataset embedding embeddings server client request response
network python rust java code program computer data database cloud storage memory
price cost money bank market stock sale buy sell pay
weather rain snow sun wind storm summer winter spring autumn
music song songs guitar piano movie film game games sport football tennis
doctor health medicine hospital disease heart blood
""".split()
SUFFIXES = ("##s", "##es", "##ed", "##ing", "##ly", "##er", "##est")
MAX_TOKENS = 64


def _vocabulary() -> dict[str, int]:
    pieces = [*SPECIAL, *WORDS, *SUFFIXES, *string.ascii_lowercase]
    pieces += [f"##{c}" for c in string.ascii_lowercase] + list(string.digits + string.punctuation)
    return {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}


VOCAB = _vocabulary()
CONFIG = BertConfig(
    vocab_size=len(VOCAB),
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=128,
)


def build_tiny_model(directory: Path, seed: int = 0) -> Path:
    """Write the tiny checkpoint under `directory/checkpoint` and its converted,
    verified ONNX model under `directory/model`; returns the model directory
    (what `OnnxEmbedder` takes). Deterministic for a given seed."""
    checkpoint = write_tiny_checkpoint(Path(directory) / "checkpoint", seed)
    return convert(checkpoint, Path(directory) / "model")


def write_tiny_checkpoint(directory: Path, seed: int = 0) -> Path:
    """A Hugging Face-style BERT checkpoint (config.json, model.safetensors,
    tokenizer.json, sentence_bert_config.json), the converter's input."""
    directory.mkdir(parents=True, exist_ok=True)
    tiny_tokenizer().save(str(directory / "tokenizer.json"))
    save_file(_weights(seed), str(directory / "model.safetensors"))
    config = {"model_type": "bert", "hidden_act": "gelu", **dataclasses.asdict(CONFIG)}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_TOKENS}))
    return directory


def tiny_tokenizer(vocab: dict[str, int] = VOCAB) -> Tokenizer:
    """BERT-style WordPiece: lowercasing, [CLS] text [SEP]."""
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def _weights(seed: int) -> dict[str, npt.NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    h, inner = CONFIG.hidden_size, CONFIG.intermediate_size

    def normal(*shape: int, std: float) -> npt.NDArray[np.float32]:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    words = normal(CONFIG.vocab_size, h, std=1.0)
    # [CLS] and [SEP] are in every text: opposite vectors cancel out in the mean,
    # so unrelated texts are not pulled together by them.
    words[VOCAB["[SEP]"]] = -words[VOCAB["[CLS]"]]
    weights = {
        "embeddings.word_embeddings.weight": words,
        "embeddings.position_embeddings.weight": normal(
            CONFIG.max_position_embeddings, h, std=0.02
        ),
        "embeddings.token_type_embeddings.weight": normal(CONFIG.type_vocab_size, h, std=0.02),
        "embeddings.LayerNorm.weight": np.ones(h, np.float32),
        "embeddings.LayerNorm.bias": np.zeros(h, np.float32),
    }
    shapes = {
        "attention.self.query": (h, h),
        "attention.self.key": (h, h),
        "attention.self.value": (h, h),
        "attention.output.dense": (h, h),
        "intermediate.dense": (inner, h),
        "output.dense": (h, inner),
    }
    for i in range(CONFIG.num_hidden_layers):
        prefix = f"encoder.layer.{i}."
        for name, shape in shapes.items():
            weights[f"{prefix}{name}.weight"] = normal(*shape, std=0.02)
            weights[f"{prefix}{name}.bias"] = normal(shape[0], std=0.02)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[f"{prefix}{norm}.weight"] = np.ones(h, np.float32)
            weights[f"{prefix}{norm}.bias"] = np.zeros(h, np.float32)
    return weights


CROSS_ENCODER_DIMENSIONS = 32
CROSS_ENCODER_SCALE, CROSS_ENCODER_SHIFT = 8.0, -4.0


def build_tiny_cross_encoder(directory: Path, seed: int = 0) -> Path:
    """A test-only cross-encoder directory (model.onnx, tokenizer.json,
    config.json), what `indexer.rerank.OnnxCrossEncoder` takes. NOT a trained
    reranker: its logit is a hand-set function of word overlap,

        logit = 8 * cos(bag(query tokens), bag(passage tokens)) - 4

    where bag() sums seeded random unit vectors of the tokens (special tokens
    and padding count zero) and the two sides are told apart by token type.
    So a passage sharing more words with the query scores higher, which makes
    orderings assertable; `cross_encoder_vectors(seed)` gives the weights for a
    numpy reference. Same vocabulary and tokenizer as the tiny embedding model;
    pairs are capped at MAX_TOKENS tokens (config.json)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tiny_tokenizer().save(str(directory / "tokenizer.json"))
    config = {
        "model_type": "infergate-test-cross-encoder",
        "note": "a hand-set word-overlap test model for infergate's tests, not a trained reranker",
        "max_position_embeddings": MAX_TOKENS,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    onnx.save(_cross_encoder_graph(cross_encoder_vectors(seed)), directory / "model.onnx")
    return directory


def cross_encoder_vectors(seed: int = 0) -> npt.NDArray[np.float32]:
    """The tiny cross-encoder's word vectors [vocab, 32]: unit rows, zero for
    the special tokens."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((len(VOCAB), CROSS_ENCODER_DIMENSIONS))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for token in SPECIAL:
        vectors[VOCAB[token]] = 0.0
    return vectors.astype(np.float32)


def _cross_encoder_graph(vectors: npt.NDArray[np.float32]) -> onnx.ModelProto:
    def const(name: str, value: npt.ArrayLike, dtype: type = np.float32) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    node = helper.make_node
    nodes = [
        node("Gather", ["vectors", "input_ids"], ["emb"]),  # [b, s, d]
        node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        node("Cast", ["token_type_ids"], ["types"], to=TensorProto.FLOAT),
        node("Mul", ["mask", "types"], ["passage_w"]),
        node("Sub", ["mask", "passage_w"], ["query_w"]),
    ]
    for side in ("query", "passage"):
        nodes += [
            node("Unsqueeze", [f"{side}_w", "axis1"], [f"{side}_w3"]),  # [b, 1, s]
            node("MatMul", [f"{side}_w3", "emb"], [f"{side}_bag"]),  # [b, 1, d]
            node("ReduceSumSquare", [f"{side}_bag"], [f"{side}_sq"], axes=[-1], keepdims=1),
            node("Add", [f"{side}_sq", "eps"], [f"{side}_sq_eps"]),
            node("Sqrt", [f"{side}_sq_eps"], [f"{side}_norm"]),
            node("Div", [f"{side}_bag", f"{side}_norm"], [f"{side}_unit"]),
        ]
    nodes += [
        node("Transpose", ["passage_unit"], ["passage_t"], perm=[0, 2, 1]),  # [b, d, 1]
        node("MatMul", ["query_unit", "passage_t"], ["cosine3"]),  # [b, 1, 1]
        node("Squeeze", ["cosine3", "axis2"], ["cosine"]),  # [b, 1]
        node("Mul", ["cosine", "scale"], ["scaled"]),
        node("Add", ["scaled", "shift"], ["logits"]),
    ]
    initializers = [
        const("vectors", vectors),
        const("axis1", [1], np.int64),
        const("axis2", [2], np.int64),
        const("eps", 1e-12),
        const("scale", CROSS_ENCODER_SCALE),
        const("shift", CROSS_ENCODER_SHIFT),
    ]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])
    graph = helper.make_graph(nodes, "tiny_cross_encoder", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the project allows (>= 1.18)
    onnx.checker.check_model(model)
    return model
