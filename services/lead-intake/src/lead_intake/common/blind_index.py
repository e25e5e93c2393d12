"""Keyed blind indexes of people (pure): find a person by email, phone or a name's prefix
without the index holding, or letting anyone without the key compute, what it indexes.

Every entry is HMAC-SHA256(key, kind, value) cut to 16 bytes; the key is a setting
(FUNNEL_SEARCH_INDEX_KEY), never stored in the database. `person_terms` lists every entry of a
person: their exact email and phone, and each 2..12-character prefix of each word of their
names and of their email's local part, folded (lower case, accents dropped). A query hashes
what it looks for the same way, once, and is an index lookup (docs/decisions/0024).
"""

from __future__ import annotations

import hmac
import re
import unicodedata

MIN_PREFIX = 2
MAX_PREFIX = 12
DIGEST_BYTES = 16
RECENT_PREFIXES = 50_000  # prefix entries a BlindIndex keeps at most (a few MB)
# Words of a name or a local part: split on spaces, and again on - ' . _ + (Anne-Marie, o'neil,
# kay.lind+news): both the whole word and its pieces are indexed.
_PIECES = re.compile("[-'.\u2019_+]+")


def fold(text: str) -> str:
    """Case- and accent-insensitive form: NFKD, combining marks dropped, case-folded."""
    if text.isascii():
        return text.lower()  # the same: ASCII is its own NFKD and NFC, and folds to lower case
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", stripped).casefold()


def words(text: str) -> set[str]:
    """The folded words of a name or a local part, and their pieces."""
    found: set[str] = set()
    for word in fold(text).split():
        found.add(word)
        found.update(piece for piece in _PIECES.split(word) if piece)
    return found


def prefixes(word: str) -> set[str]:
    """Every prefix of 2..12 characters (a word of one character has none)."""
    return {word[:n] for n in range(MIN_PREFIX, min(len(word), MAX_PREFIX) + 1)}


class BlindIndex:
    """HMAC-SHA256 under the search key; kinds kept apart ("e" email, "p" phone, "q" prefix)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the search index key needs at least 16 bytes")
        self._key = key
        # Prefixes' entries recently made: names and local parts share most of their short
        # prefixes ("an", "ann", "jo"...), so a post's score of entries is mostly found here.
        # Bounded: emptied when full (it holds digests the key makes anyway, in this process).
        self._recent: dict[str, bytes] = {}

    def _digest(self, kind: str, value: str) -> bytes:
        message = f"{kind}\x00{value}".encode()
        # The one-shot C implementation: the same digest, several times cheaper than hmac.new
        # (a person has a score of entries; every capture, import and correction makes them).
        return hmac.digest(self._key, message, "sha256")[:DIGEST_BYTES]

    def email(self, email: str) -> bytes:
        """The entry of an exact, normalized email."""
        return self._digest("e", email)

    def phone(self, phone: str) -> bytes:
        """The entry of an exact E.164 phone."""
        return self._digest("p", phone)

    def prefix(self, folded: str) -> bytes:
        """The entry of a folded prefix (cut to 12 characters, the longest indexed)."""
        cut = folded[:MAX_PREFIX]
        found = self._recent.get(cut)
        if found is None:
            if len(self._recent) >= RECENT_PREFIXES:
                self._recent.clear()
            found = self._recent[cut] = self._digest("q", cut)
        return found

    def person_terms(
        self,
        *,
        email: str | None,
        phone: str | None,
        first_name: str | None,
        last_name: str | None,
    ) -> list[bytes]:
        """Every entry of a person, distinct, in a stable order."""
        terms: set[bytes] = set()
        if email:
            terms.add(self.email(email))
        if phone:
            terms.add(self.phone(phone))
        texts = [first_name or "", last_name or "", email.rsplit("@", 1)[0] if email else ""]
        for word in set().union(*(self._words(t) for t in texts)):
            terms.update(self._word_entries(word))
        return sorted(terms)

    def _words(self, text: str) -> set[str]:
        return words(text)

    def _word_entries(self, word: str) -> list[bytes]:
        return [self.prefix(p) for p in prefixes(word)]

    def remembering(self) -> BlindIndex:
        """This index remembering the entries it made, for one batch of people (an import's):
        names and local parts share most of their words and short prefixes, so the same
        entries cost a fraction of the digests. Drop it with the batch."""
        return _Remembering(self._key)


class _Remembering(BlindIndex):
    """The same entries as BlindIndex, each word's and each prefix's made once."""

    def __init__(self, key: bytes) -> None:
        super().__init__(key)
        self._prefixes: dict[str, bytes] = {}
        self._entries: dict[str, list[bytes]] = {}
        self._texts: dict[str, set[str]] = {}

    def prefix(self, folded: str) -> bytes:
        cut = folded[:MAX_PREFIX]
        found = self._prefixes.get(cut)
        if found is None:
            found = self._prefixes[cut] = self._digest("q", cut)
        return found

    def _words(self, text: str) -> set[str]:
        found = self._texts.get(text)
        if found is None:
            found = self._texts[text] = words(text)
        return found

    def _word_entries(self, word: str) -> list[bytes]:
        found = self._entries.get(word)
        if found is None:
            found = self._entries[word] = [self.prefix(p) for p in prefixes(word)]
        return found


def query_words(q: str) -> list[str]:
    """The folded words of a search (`q`), each to be a prefix; an email-like word keeps only
    its local part. Raises ValueError when a word is shorter than 2 characters."""
    found: list[str] = []
    for raw in fold(q).split():
        word = raw.split("@", 1)[0] if "@" in raw else raw
        if len(word) < MIN_PREFIX:
            raise ValueError(f"each word needs at least {MIN_PREFIX} characters")
        if word[:MAX_PREFIX] not in found:
            found.append(word[:MAX_PREFIX])
    if not found:
        raise ValueError(f"needs at least {MIN_PREFIX} characters")
    return found
