"""CLIP's byte-level BPE tokenizer without torch: what an ONNX export reads its words with.

It reads the merges file open_clip ships (`bpe_simple_vocab_16e6.txt.gz`, copied into every export) and gives the
token ids open_clip's `SimpleTokenizer` gives (tests pin them equal): the same cleaning (ftfy, HTML entities,
whitespace, lower case), the same word pattern, the same byte-to-character table and the same merge order.
"""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from pathlib import Path

import ftfy
import regex

SOT, EOT = "<start_of_text>", "<end_of_text>"
N_MERGES = 49152 - 256 - 2  # CLIP's vocabulary: 256 bytes, 256 word-final bytes, these merges, SOT and EOT
WORD = regex.compile(
    rf"{SOT}|{EOT}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+", regex.IGNORECASE
)


PRINTABLE = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
VOCAB_BYTES = PRINTABLE + [b for b in range(256) if b not in PRINTABLE]  # the order of the vocabulary's first 256


def byte_characters() -> list[str]:
    """A printable character for each byte value, by byte: printable Latin-1 bytes stand for themselves, the others
    take the code points from 256 upwards in byte order (so no BPE symbol is whitespace or a control character)."""
    others = iter(range(256, 512))
    return [chr(byte) if byte in PRINTABLE else chr(next(others)) for byte in range(256)]


class ClipTokenizer:
    """Text to CLIP token ids, from a merges file."""

    def __init__(self, merges_file: Path, context_length: int) -> None:
        lines = gzip.decompress(Path(merges_file).read_bytes()).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
        self.byte_chars = byte_characters()
        base = [self.byte_chars[b] for b in VOCAB_BYTES]
        ordered = base + [c + "</w>" for c in base] + ["".join(m) for m in merges] + [SOT, EOT]
        self.ids = {symbol: i for i, symbol in enumerate(ordered)}
        self.ranks = {(m[0], m[1]): rank for rank, m in enumerate(merges)}
        self.sot_token_id, self.eot_token_id = self.ids[SOT], self.ids[EOT]
        self.context_length = context_length
        self.symbols = lru_cache(maxsize=10_000)(self._symbols)

    def _symbols(self, word: str) -> tuple[str, ...]:
        """A word's BPE symbols: start from its characters (the last one marked word-final), then merge the pair of
        lowest rank, every occurrence left to right, until no pair has a rank."""
        if word in (SOT, EOT):
            return (word,)
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            ranked = [(self.ranks.get((a, b)), (a, b)) for a, b in zip(parts, parts[1:], strict=False)]
            known = [(rank, pair) for rank, pair in ranked if rank is not None]
            if not known:
                break
            first, second = min(known)[1]
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)

    def encode(self, text: str) -> list[int]:
        """Token ids of a text, without SOT/EOT."""
        cleaned = " ".join(html.unescape(html.unescape(ftfy.fix_text(text))).strip().split()).lower()
        out: list[int] = []
        for word in WORD.findall(cleaned):
            mapped = "".join(self.byte_chars[b] for b in word.encode("utf-8"))
            out.extend(self.ids[symbol] for symbol in self.symbols(mapped))
        return out

    def sequence(self, text: str) -> list[int]:
        """`[SOT] ids [EOT]` as open_clip's tokenizer makes it: at most the context length, EOT kept last."""
        ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
        if len(ids) > self.context_length:
            ids = ids[: self.context_length - 1] + [self.eot_token_id]
        return ids
