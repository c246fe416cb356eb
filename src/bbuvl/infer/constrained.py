"""Constrained decoding for generate mode: the model may only write an answer `format_answer` could have written.

The answer grammar is `json.dumps(objs, ensure_ascii=False)` of `[{"bbox_2d": [x1, y1, x2, y2], "label": L}]`
(encode/chat.py), followed by `<|im_end|>`:

    answer := "[]" | "[" object (", " object)* "]"
    object := '{"bbox_2d": [' x1 ", " y1 ", " x2 ", " y2 '], "label": ' json(L) "}"

with integers written without leading zeros, 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H in the row's answer extent (model frame, or 0-1000 when relative)
(W x H; without one, at most `MAX_DIGITS` digits), and L one of the checkpoint's labels.

Design (docs/constrained_decoding.md has the reasons and measurements):
- The grammar is a byte-level automaton; tokens are byte strings (byte-level BPE tokens may end inside a UTF-8
  character, which a byte automaton does not mind).
- `TokenIndex` keeps every token's bytes sorted, so all tokens sharing a prefix form one contiguous range.
  The allowed set of a state is found by walking only the bytes the grammar accepts, narrowing the range with
  `bisect` at each byte: the work is proportional to the grammar-consistent prefixes, never to the vocabulary.
- Budget: `cost(state)` is an upper bound on the tokens needed to close the answer (the rest of the object with
  every coordinate still to write at its most digits and the costliest label, then `]`, `<|im_end|>`), computed
  from optimal tokenisations of fixed pieces, such that every digit and every token of the cheapest closing lowers
  it by at least one. A token is allowed only if the cost after it fits in the tokens left, so the answer always
  closes within `max_new_tokens`, and no object is started that could not be finished as the model would write
  it: near the limit the list closes after the last whole object instead of shortening a number.
- Per-row state: the logits processor follows each row's last token (left-padded batches are fine: the new
  tokens are always the last column).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from bbuvl.data.families import TURN_END

# Pieces of `json.dumps` with its default separators (", " and ": "), as encode/chat.py's format_answer writes them.
OBJ_HEAD = b'{"bbox_2d": ['
OBJ_SEP = b", " + OBJ_HEAD
NUM_SEP = b", "
BOX_TAIL = b'], "label": '
LITERALS = (OBJ_HEAD, OBJ_SEP, NUM_SEP, BOX_TAIL)
LIT_HEAD, LIT_OBJ_SEP, LIT_NUM_SEP, LIT_TAIL = range(4)
MAX_DIGITS = 5  # coordinate digit cap when no frame is known (Qwen2.5-VL frames are far below 100,000 px)
DIGITS = b"0123456789"

# Grammar phases.
OPEN, FIRST, LIT, NUM, LABEL, CLOSE, NEXT, END, DONE = range(9)


class State(NamedTuple):
    """Where an answer stands: phase, literal and position (or label-trie node), coordinate, number so far, box."""

    phase: int
    lit: int = 0
    pos: int = 0  # byte position in the literal, or the label-trie node
    k: int = 0  # coordinate index 0..3 (x1, y1, x2, y2)
    val: int = 0  # the number written so far
    nd: int = 0  # how many digits of it
    box: tuple[int, ...] = ()  # finished coordinates of this object


START = State(OPEN)


def byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-unicode table, which byte-level BPE (Qwen's included) uses to spell token bytes."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def added_ids(tokenizer: Any) -> set[int]:
    """The ids of a tokenizer's added and special tokens (`<|im_end|>`, the image pads): no bytes of an answer."""
    return set(getattr(tokenizer, "added_tokens_decoder", {}) or {})


def spelled_bytes(token: str, decoder: dict[str, int]) -> bytes | None:
    """A byte-level BPE token's bytes, from its spelling (`byte_decoder`); None when it is not spelled that way."""
    try:
        return bytes(decoder[c] for c in token)
    except KeyError:
        return None


def token_bytes(tokenizer: Any, ids: Sequence[int]) -> list[bytes]:
    """Each of `ids`' bytes as the byte-level BPE spells them; b"" for added and special tokens, a token's UTF-8 text
    when it is not spelled in bytes."""
    decoder, added = byte_decoder(), added_ids(tokenizer)
    out = []
    for i, token in zip(ids, tokenizer.convert_ids_to_tokens(list(ids))):
        if i in added or token is None:
            out.append(b"")
        else:
            spelled = spelled_bytes(token, decoder)
            out.append(spelled if spelled is not None else token.encode("utf-8"))
    return out


class TokenIndex:
    """Every ordinary token's bytes, sorted, so all tokens starting with a prefix are one range (found by bisect)."""

    def __init__(self, token_bytes: Sequence[bytes | None]):
        pairs = sorted((b, i) for i, b in enumerate(token_bytes) if b)
        self.keys = [b for b, _ in pairs]
        self.ids = [i for _, i in pairs]
        self.vocab = frozenset(self.keys)
        self.max_len = max(map(len, self.keys))

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "TokenIndex":
        """Index a byte-level BPE tokenizer's vocabulary; added and special tokens are left out (never allowed)."""
        decoder, added = byte_decoder(), added_ids(tokenizer)
        vocab = tokenizer.get_vocab()
        spelled: list[bytes | None] = [None] * (max(vocab.values()) + 1)
        unreadable = 0
        for token, i in vocab.items():
            if i in added:
                continue
            spelled[i] = spelled_bytes(token, decoder)
            unreadable += spelled[i] is None
        if unreadable > len(vocab) // 2:
            raise ValueError("constrained decoding needs a byte-level BPE tokenizer (Qwen's): this one is not")
        return cls(spelled)

    def prefix_range(self, prefix: bytes, lo: int, hi: int) -> tuple[int, int]:
        """`[a, z)`: the tokens within `[lo, hi)` that start with `prefix`."""
        a = bisect_left(self.keys, prefix, lo, hi)
        end = _after_prefix(prefix)
        return a, (bisect_left(self.keys, end, a, hi) if end is not None else hi)

    def suffix_costs(self, text: bytes) -> list[float]:
        """`costs[i]`: fewest tokens spelling `text[i:]` (inf where none does); `costs[len(text)] == 0`."""
        n = len(text)
        costs = [math.inf] * (n + 1)
        costs[n] = 0
        for i in range(n - 1, -1, -1):
            for j in range(i + 1, min(n, i + self.max_len) + 1):
                if costs[j] + 1 < costs[i] and text[i:j] in self.vocab:
                    costs[i] = costs[j] + 1
        return costs


def _after_prefix(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix` (None: there is none)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


class LabelTrie:
    """The labels' JSON literals (quotes included) as a byte trie, with the cheapest closing cost below each node."""

    def __init__(self, labels: Sequence[str], index: TokenIndex):
        self.children: list[dict[int, int]] = [{}]
        self.terminal: list[bool] = [False]
        self.cost: list[float] = [math.inf]
        self.longest = 0.0  # the costliest label's fewest tokens: a budget that lets every label be written
        for label in dict.fromkeys(labels):
            literal = json.dumps(label, ensure_ascii=False).encode("utf-8")
            costs = index.suffix_costs(literal)
            self.longest = max(self.longest, costs[0])
            node = 0
            self.cost[0] = min(self.cost[0], costs[0])
            for depth, b in enumerate(literal, start=1):
                if b not in self.children[node]:
                    self.children[node][b] = len(self.children)
                    self.children.append({})
                    self.terminal.append(False)
                    self.cost.append(math.inf)
                node = self.children[node][b]
                self.cost[node] = min(self.cost[node], costs[depth])
            self.terminal[node] = True


def _fits(val: int, nd: int, lo: int, hi: int, max_digits: int) -> int | None:
    """Fewest digits to append to the prefix `val` (`nd` digits) to land in `[lo, hi]`, or None if impossible."""
    if nd == 0:
        return len(str(lo)) if lo <= hi else None
    if val == 0:  # "0" takes no more digits: no leading zeros
        return 0 if lo <= 0 <= hi else None
    for j in range(0, max_digits - nd + 1):
        first, last = val * 10**j, val * 10**j + 10**j - 1
        if first > hi:
            return None
        if last >= lo:
            return j
    return None


@dataclass
class _Entry:
    """A state's allowed tokens, the state each leads to, and the closing cost after each."""

    ids: np.ndarray  # [n] int64
    costs: np.ndarray  # [n] float64
    next_state: dict[int, State]

    def allowed(self, tokens_left: int) -> np.ndarray:
        """Ids that leave enough budget to close; the cheapest ones when none does (budget below the minimum)."""
        ok = self.costs <= tokens_left - 1
        if ok.all():
            return self.ids
        if ok.any():
            return self.ids[ok]
        return self.ids[self.costs == self.costs.min()] if len(self.ids) else self.ids


class AnswerGrammar:
    """The answer automaton for one model frame (`(W, H)` or None), with a cache of allowed sets per state."""

    def __init__(self, index: TokenIndex, labels: LabelTrie, eos_token_id: int, frame: tuple[int, int] | None):
        self.index, self.labels, self.eos = index, labels, eos_token_id
        self.max_digits = MAX_DIGITS if frame is None else len(str(max(frame)))
        self.frame = frame or (10**MAX_DIGITS - 1, 10**MAX_DIGITS - 1)
        self._lit_costs = [index.suffix_costs(lit) for lit in LITERALS]
        self._close = index.suffix_costs(b"}")[0]
        self._end = index.suffix_costs(b"]")[0]
        self._open = index.suffix_costs(b"[]")[0]
        self._cache: dict[State, _Entry] = {}

    # --- the byte automaton ------------------------------------------------------------------

    def bounds(self, k: int, box: tuple[int, ...]) -> tuple[int, int]:
        """`[lo, hi]` for coordinate `k`: x2 > x1, y2 > y1 (a box without area is no part), all within the frame."""
        W, H = self.frame
        return ((0, W - 1), (0, H - 1), (box[0] + 1 if len(box) > 0 else 1, W), (box[1] + 1 if len(box) > 1 else 1, H))[k]

    def step(self, s: State, b: int) -> State | None:
        """The state after byte `b`, or None if the grammar refuses it."""
        p = s.phase
        if p == OPEN:
            return State(FIRST) if b == 0x5B else None  # [
        if p in (FIRST, NEXT):
            if b == 0x5D:  # ]
                return State(END)
            if b == (0x7B if p == FIRST else 0x2C):  # { after "[", "," after an object
                return State(LIT, LIT_HEAD if p == FIRST else LIT_OBJ_SEP, 1)
            return None
        if p == LIT:
            lit = LITERALS[s.lit]
            if lit[s.pos] != b:
                return None
            if s.pos + 1 < len(lit):
                return s._replace(pos=s.pos + 1)
            if s.lit == LIT_TAIL:
                return State(LABEL)
            return State(NUM, k=s.k, box=s.box)
        if p == NUM:
            lo, hi = self.bounds(s.k, s.box)
            if 0x30 <= b <= 0x39:
                if s.nd and s.val == 0:
                    return None
                val = s.val * 10 + (b - 0x30)
                if _fits(val, s.nd + 1, lo, hi, self.max_digits) is None:
                    return None
                return s._replace(val=val, nd=s.nd + 1)
            if s.nd == 0 or not lo <= s.val <= hi:
                return None
            if s.k < 3 and b == 0x2C:  # ,
                return State(LIT, LIT_NUM_SEP, 1, s.k + 1, box=s.box + (s.val,))
            if s.k == 3 and b == 0x5D:  # ]
                return State(LIT, LIT_TAIL, 1)
            return None
        if p == LABEL:
            child = self.labels.children[s.pos].get(b)
            if child is None:
                return None
            return State(CLOSE) if self.labels.terminal[child] else State(LABEL, pos=child)
        if p == CLOSE:
            return State(NEXT) if b == 0x7D else None  # }
        return None  # END, DONE: only <|im_end|>

    def run(self, text: bytes, s: State = START) -> State | None:
        """The state after every byte of `text` from `s`, or None if the grammar refuses one."""
        for b in text:
            if s is None:
                return None
            s = self.step(s, b)
        return s

    def next_bytes(self, s: State) -> bytes:
        """Bytes worth trying from `s` (a superset of those `step` accepts; `step` decides)."""
        p = s.phase
        if p == OPEN:
            return b"["
        if p == FIRST:
            return b"]{"
        if p == NEXT:
            return b"],"
        if p == LIT:
            return LITERALS[s.lit][s.pos : s.pos + 1]
        if p == NUM:
            return DIGITS + (b"," if s.k < 3 else b"]")
        if p == LABEL:
            return bytes(self.labels.children[s.pos])
        if p == CLOSE:
            return b"}"
        return b""

    # --- closing cost ------------------------------------------------------------------------

    def cost(self, s: State) -> float:
        """Tokens that surely suffice to close the answer from `s`, `<|im_end|>` included (inf: cannot close)."""
        p = s.phase
        if p == DONE:
            return 0
        if p == END:
            return 1
        after_label = self._close + self._end + 1
        if p == OPEN:
            return self._open + 1
        if p in (FIRST, NEXT):
            return self._end + 1
        if p == CLOSE:
            return after_label
        if p == LABEL:
            return self.labels.cost[s.pos] + after_label
        if p == LIT:
            rest = self._lit_costs[s.lit][s.pos]
            if s.lit == LIT_TAIL:
                return rest + self.labels.longest + after_label
            return rest + self._box_cost(s.k, 0, 0, s.box)
        if p == NUM:
            return self._box_cost(s.k, s.val, s.nd, s.box)
        return math.inf

    def label_budget(self) -> int:
        """New tokens that let a row starting at a label write any label, then close the answer."""
        return int(self.labels.longest + self._close + self._end + 1)

    def _box_cost(self, k: int, val: int, nd: int, box: tuple[int, ...]) -> float:
        """Closing cost from inside coordinate `k`: its remaining digits and the later coordinates, each at their
        most digits, and the costliest label."""
        lo, hi = self.bounds(k, box)
        if _fits(val, nd, lo, hi, self.max_digits) is None:
            return math.inf
        # One token per digit (the single-digit tokens exist), each coordinate at the width of its upper bound: the
        # budget holds the widest box the model may write, so it never has to shorten a number to close in time.
        more = 0 if nd and val == 0 else max(len(str(hi)) - nd, 0)
        W, H = self.frame
        later = sum(len(str(W if j % 2 == 0 else H)) for j in range(k + 1, 4))
        sep = self._lit_costs[LIT_NUM_SEP][0]
        tokens = more + later + sep * (3 - k)
        return tokens + self._lit_costs[LIT_TAIL][0] + self.labels.longest + self._close + self._end + 1

    # --- allowed tokens ----------------------------------------------------------------------

    def entry(self, s: State) -> _Entry:
        """The allowed tokens of `s` (cached), each with its next state and closing cost."""
        e = self._cache.get(s)
        if e is None:
            e = self._walk(s)
            if not s.box:  # states holding finished coordinates rarely come back: caching them only costs memory
                if len(self._cache) > 50_000:
                    self._cache.clear()
                self._cache[s] = e
        return e

    def _walk(self, s: State) -> _Entry:
        if s.phase in (END, DONE):
            return _Entry(np.array([self.eos]), np.array([0.0]), {self.eos: State(DONE)})
        keys, ids = self.index.keys, self.index.ids
        found: dict[int, State] = {}
        stack = [(b"", 0, len(keys), s)]
        while stack:
            prefix, lo, hi, st = stack.pop()
            while lo < hi and len(keys[lo]) == len(prefix):  # tokens equal to the prefix sort first in its range
                found[ids[lo]] = st
                lo += 1
            if lo == hi:  # no longer token starts with this prefix (e.g. a digit: Qwen splits digits one by one)
                continue
            for b in self.next_bytes(st):
                nxt = self.step(st, b)
                if nxt is None:
                    continue
                longer = prefix + bytes((b,))
                a, z = self.index.prefix_range(longer, lo, hi)
                if a < z:
                    stack.append((longer, a, z, nxt))
        order = sorted(found)
        return _Entry(np.array(order, dtype=np.int64), np.array([self.cost(found[i]) for i in order], dtype=np.float64), found)


class AnswerConstraint:
    """What a checkpoint allows its answers to be (tokenizer index, label trie); makes one processor per `generate`."""

    def __init__(self, index: TokenIndex, labels: Sequence[str], eos_token_id: int):
        if not all(bytes([d]) in index.vocab for d in DIGITS):  # the closing cost counts one token per digit
            raise ValueError("constrained decoding needs a vocabulary with a token for each single digit 0-9")
        self.index = index
        self.labels = LabelTrie(labels, index)
        self.eos_token_id = eos_token_id
        self._grammars: dict[tuple[int, int] | None, AnswerGrammar] = {}

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, labels: Sequence[str], eos_token: str = TURN_END) -> "AnswerConstraint":
        """Build from a byte-level BPE tokenizer and the checkpoint's label vocabulary."""
        return cls(TokenIndex.from_tokenizer(tokenizer), labels, tokenizer.convert_tokens_to_ids(eos_token))

    def grammar(self, frame: tuple[int, int] | None) -> AnswerGrammar:
        """The automaton for a `(W, H)` model frame (shared, so its cache lives across batches)."""
        key = None if frame is None else (int(frame[0]), int(frame[1]))
        if key not in self._grammars:
            self._grammars[key] = AnswerGrammar(self.index, self.labels, self.eos_token_id, key)
        return self._grammars[key]

    def processor(self, frames: Sequence[tuple[int, int] | None], max_new_tokens: int,
                  starts: Sequence[State] | None = None) -> "AnswerLogitsProcessor":
        """A logits processor for one batched `generate` call: one frame per row, each row from `starts` (default
        the answer's beginning; a row whose prompt already holds part of the answer starts where that part ends)."""
        return AnswerLogitsProcessor([self.grammar(f) for f in frames], max_new_tokens, starts)


class AnswerLogitsProcessor(LogitsProcessor):
    """Masks every token the answer grammar refuses, row by row, and closes the answer before the budget runs out."""

    def __init__(self, grammars: Sequence[AnswerGrammar], max_new_tokens: int, starts: Sequence[State] | None = None):
        self.grammars = list(grammars)
        self.max_new_tokens = max_new_tokens
        self.states = list(starts) if starts is not None else [START] * len(self.grammars)
        if len(self.states) != len(self.grammars):
            raise ValueError(f"{len(self.states)} start states for {len(self.grammars)} rows")
        self._entries: list[_Entry | None] = [None] * len(self.grammars)
        self._prompt_len: int | None = None
        self.off_grammar = 0  # tokens that arrived although masked (another processor, or all-NaN scores)
        # Per row: the budget refused the token the model preferred among those the grammar allows (a further
        # object, a wider number): the answer was closed by `max_new_tokens`, not by the model.
        self.cut = [False] * len(self.grammars)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """`scores` [batch, vocab] with every refused token at -inf."""
        batch, vocab = scores.shape
        if batch != len(self.grammars):
            raise ValueError(f"constrained decoding was set up for {len(self.grammars)} rows, got {batch} (beam search is not supported)")
        if self._prompt_len is None:
            self._prompt_len = input_ids.shape[1]
        else:
            for r, token in enumerate(input_ids[:, -1].tolist()):
                entry = self._entries[r]
                nxt = entry.next_state.get(token) if entry is not None else None
                if nxt is None and self.states[r].phase != DONE:
                    self.off_grammar += 1
                    nxt = State(END)  # the answer is broken already: end it rather than wander on
                self.states[r] = nxt or self.states[r]
        tokens_left = self.max_new_tokens - (input_ids.shape[1] - self._prompt_len)
        rows, cols = [], []
        for r, grammar in enumerate(self.grammars):
            entry = self._entries[r] = grammar.entry(self.states[r])
            grammar_ids = entry.ids[entry.ids < vocab]
            ids = entry.allowed(tokens_left)
            ids = ids[ids < vocab]
            if not self.cut[r] and len(ids) < len(grammar_ids):
                preferred = grammar_ids[int(scores[r, torch.from_numpy(grammar_ids).to(scores.device)].argmax())]
                self.cut[r] = not (ids == preferred).any()
            cols.append(ids)
            rows.append(np.full(len(ids), r, dtype=np.int64))
        # Copy the few allowed scores into a -inf row rather than masking the whole vocabulary (one fill, no
        # [batch, vocab] boolean mask); only the short index lists travel to the GPU.
        r = torch.from_numpy(np.concatenate(rows)).to(scores.device)
        c = torch.from_numpy(np.concatenate(cols)).to(scores.device)
        out = torch.full_like(scores, -math.inf)
        out[r, c] = scores[r, c]
        return out
