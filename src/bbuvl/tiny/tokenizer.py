"""A small Qwen2-format tokenizer trained offline, so the tiny test model speaks the same text as the real one.

Byte-level BPE with Qwen2's own normaliser and pre-tokeniser (digits split one by one, so every coordinate is a
sequence of single-digit tokens as in the real vocabulary), trained on text that mixes the system prompts of
`bbuvl.encode.prompts`, the label hierarchy's Chinese and English words, digits and bbox-JSON answers. Qwen's
special tokens follow the learned vocabulary in Qwen's order (then, for the Qwen3 families, the think tags);
eos `<|im_end|>`, pad `<|endoftext|>`, as in Qwen2.5-VL. Each family's chat template is in `tiny/templates.py`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

from bbuvl.data.families import DEFAULT_FAMILY, IMAGE_TOKEN, TURN_END, TURN_START
from bbuvl.data.labels import Hierarchy
from bbuvl.encode.prompts import USER_TEXT, system_prompt
from bbuvl.tiny.templates import chat_template

# Qwen2.5-VL's added tokens in vocabulary order (ids 151643..151656 in the real tokenizer).
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    TURN_START,
    TURN_END,
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    IMAGE_TOKEN,
    "<|video_pad|>",
)
# Qwen3's vocabulary (Qwen3-VL's and Qwen3.5's) adds think tags as ordinary, not special, tokens: decoding with
# skip_special_tokens keeps them in the text.
THINK_TOKENS: tuple[str, ...] = ("<think>", "</think>")
THINK_FAMILIES = frozenset({"qwen3_vl", "qwen3_5"})
EOS_TOKEN = TURN_END
PAD_TOKEN = "<|endoftext|>"

# Frequent Chinese characters beyond the hierarchy's, so ordinary prompt and answer text is not all raw bytes.
_COMMON_HANZI = (
    "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么"
    "心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现"
    "分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位"
    "因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师"
    "书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及"
    "今京务制解各任至清物台象记边共风战干接题该"
)
_ENGLISH_WORDS = (
    "the a of and to in is on with for photo image box label cable screw port panel unit rack cabinet ground "
    "fibre plate sticker left top right bottom correct wrong installed missing full empty state category object "
    "answer example find every each one two three inspection site room equipment connection point"
).split()


def training_corpus(hierarchy: Hierarchy, n_answers: int = 1500, seed: int = 0) -> list[str]:
    """Lines mixing the system prompts, Chinese labels and cues, English glosses, digits and bbox-JSON answers."""
    rng = random.Random(seed)
    labels = hierarchy.labels()
    # The prompts training really sends, in both languages, so their words get merged like the answers'.
    lines: list[str] = [system_prompt(labels, hierarchy, lang) for lang in ("zh", "en")] + list(USER_TEXT.values())
    for cat in hierarchy.categories.values():
        lines += [f"- {cat.name}（{cat.gloss}）：{cat.cue_zh}", f"- {cat.gloss} ({cat.name}): {cat.cue_en}"]
        for attr, (gloss, states) in cat.attributes.items():
            lines.append(f"{cat.name}/{attr}: {gloss}; " + ", ".join(f"{s} = {g}" for s, g in states.items()))
    lines += labels + [hierarchy.english(label) for label in labels]
    for _ in range(n_answers // 3):
        lines.append("，".join("".join(rng.choices(_COMMON_HANZI, k=rng.randint(2, 8))) for _ in range(3)) + "。")
        number = rng.randrange(0, 10 ** rng.randint(1, 5))
        lines.append(" ".join(rng.choices(_ENGLISH_WORDS, k=8)).capitalize() + f" {number}.")
    for _ in range(n_answers):
        english = rng.random() < 0.2
        answer = _random_answer(rng, labels, hierarchy if english else None)
        lines.append(f"```json\n{answer}\n```" if rng.random() < 0.1 else answer)
    return lines


def _random_answer(rng: random.Random, labels: list[str], english: Hierarchy | None) -> str:
    """One assistant answer: 0-6 boxes with integer pixel corners, sorted by (y1, x1)."""
    objects = []
    for _ in range(rng.choice((0, 1, 2, 3, 4, 6))):
        x1, y1 = rng.randrange(0, 1800), rng.randrange(0, 1800)
        box = [x1, y1, x1 + rng.randrange(4, 600), y1 + rng.randrange(4, 600)]
        label = rng.choice(labels)
        objects.append({"bbox_2d": box, "label": english.english(label) if english else label})
    objects.sort(key=lambda o: (o["bbox_2d"][1], o["bbox_2d"][0]))
    return json.dumps(objects, ensure_ascii=False)


def train_tokenizer(
    vocab_size: int = 3000, hierarchy: Hierarchy | None = None, seed: int = 0, family: str = DEFAULT_FAMILY
) -> Qwen2Tokenizer:
    """Train the byte-level BPE (`vocab_size` learned tokens at most) and wrap it as a Qwen2 tokenizer.

    The Qwen3 families (`family` a `model_type`) also get the think tags and their own chat template.
    """
    template = chat_template(family)
    corpus = training_corpus(hierarchy or Hierarchy.load(), seed=seed)
    vocab, merges = _train_bpe(corpus, vocab_size)
    for token in QWEN_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=32768,
    )
    named = {EOS_TOKEN, PAD_TOKEN}
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in QWEN_SPECIAL_TOKENS if t not in named]})
    if family in THINK_FAMILIES:
        tokenizer.add_tokens(list(THINK_TOKENS))
    tokenizer.chat_template = template
    return tokenizer


def _train_bpe(corpus: Iterable[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn a byte-level BPE with Qwen2's normaliser and pre-tokeniser; returns (vocab, merges)."""
    bpe = Tokenizer(BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no unknown tokens ever
        special_tokens=[],
    )
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    # tokenizers 0.23 serialises merges as pairs and wants them back as tuples.
    return dict(model["vocab"]), [tuple(pair) for pair in model["merges"]]
