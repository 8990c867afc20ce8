"""A count-based n-gram language model: P(x_{t+1} | x_1..x_t) from a table of counts.

Lecture: "any system that implements the above probability function will be called a
language model". An n-gram model implements it by looking only at the last n-1 tokens and
counting how often each token followed them in the training data. It has the same
`next_token_probs(ids)` interface as the GPT, and its `loss` is the same mean cross entropy,
so the two can be compared number for number. Host-only code (plain NumPy).
Left out: Kneser-Ney and Katz back-off, sentence-boundary tokens, pruning.
"""
from __future__ import annotations

import math

import numpy

from minillm.errors import UserError

SMOOTHINGS = ("add-k", "interpolated")


class NGramLM:
    """An n-gram language model fitted by counting.

    Smoothing gives unseen continuations a share of the probability, so every distribution
    sums to 1 and no token has probability 0 (h = the last n-1 tokens, V = vocab size):

    - "add-k":  P(v | h) = (c(h, v) + k) / (c(h) + k·V)
    - "interpolated" (Jelinek-Mercer, recursive):
          P_m(v | h) = lam · c(h, v) / c(h) + (1 - lam) · P_{m-1}(v | h without its oldest token)
      with P_0(v) = 1/V, and P_m = P_{m-1} when the context h was never seen.

    Near the start of a sequence fewer than n-1 tokens exist; the model then uses the
    longest context available (a lower-order n-gram).

    Example:
        >>> lm = NGramLM(2).fit([0, 1, 0, 1, 1], vocab_size=2)
        >>> lm.next_token_probs([0])   # c(0,1)=2, c(0)=2, k=1: (2+1)/(2+2) = 0.75
        array([0.25, 0.75])
    """

    def __init__(self, n: int, smoothing: str = "add-k", k: float = 1.0, lam: float = 0.8):
        if not isinstance(n, (int, numpy.integer)) or isinstance(n, bool) or n < 1:
            raise UserError(f"n must be an integer >= 1 (1 = unigram, 2 = bigram, ...), got {n!r}")
        if smoothing not in SMOOTHINGS:
            raise UserError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
        if not k > 0:
            raise UserError(f"k must be > 0 (k = 0 would give unseen tokens probability 0), got {k}")
        if not 0 <= lam < 1:
            raise UserError(f"lam must lie in [0, 1) so lower orders keep some weight, got {lam}")
        self.n, self.smoothing, self.k, self.lam = int(n), smoothing, float(k), float(lam)
        self.vocab_size: int | None = None
        self._keys: dict[int, numpy.ndarray] = {}    # order m -> sorted m-gram keys
        self._counts: dict[int, numpy.ndarray] = {}  # order m -> c(m-gram), aligned with keys
        self._ctx_keys: dict[int, numpy.ndarray] = {}    # order m -> sorted context keys
        self._ctx_counts: dict[int, numpy.ndarray] = {}  # c(h) = Σ_v c(h, v)

    # ----- fitting ----------------------------------------------------------------------
    def fit(self, ids, vocab_size: int) -> "NGramLM":
        """Count every m-gram (m = 1..n) of `ids` (a 1-D sequence of ints in [0, vocab_size))."""
        if not isinstance(vocab_size, (int, numpy.integer)) or vocab_size < 1:
            raise UserError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        if vocab_size ** self.n >= 2 ** 63:
            raise UserError(f"n={self.n} with vocab_size={vocab_size} has more possible n-grams "
                             "than 64-bit keys can number: use a smaller n")
        self.vocab_size = int(vocab_size)
        ids = self._check_ids(ids, "fit")
        if len(ids) == 0:
            raise UserError("fit needs at least one token id")
        for m in range(1, self.n + 1):
            keys, counts = numpy.unique(self._ngram_keys(ids, m), return_counts=True)
            self._keys[m], self._counts[m] = keys, counts
            # c(h): how often h was followed by anything = the sum of its m-gram counts
            ctx, first = numpy.unique(keys // self.vocab_size, return_index=True)
            self._ctx_keys[m] = ctx
            self._ctx_counts[m] = numpy.add.reduceat(counts, first) if len(keys) else counts
        return self

    def _ngram_keys(self, ids: numpy.ndarray, m: int) -> numpy.ndarray:
        """Every m-gram of ids as one integer, base V: (x_1, ..., x_m) -> Σ x_i·V^(m-i).

        Example (V = 10, m = 2): [3, 1, 4] -> [31, 14].
        """
        keys = numpy.zeros(max(len(ids) - m + 1, 0), dtype=numpy.int64)
        for i in range(m):
            keys = keys * self.vocab_size + ids[i:len(ids) - m + 1 + i]
        return keys

    def count(self, ngram) -> int:
        """c(x_1..x_m): how often this m-gram (m <= n) occurred in the training ids."""
        self._check_fitted()
        ngram = list(ngram)
        if not 1 <= len(ngram) <= self.n:
            raise ValueError(f"an n-gram of this model has 1 to {self.n} tokens, got {len(ngram)}")
        key = self._ngram_keys(self._check_ids(ngram, "count"), len(ngram))
        return int(_lookup(self._keys[len(ngram)], self._counts[len(ngram)], key)[0])

    # ----- the language model -------------------------------------------------------------
    def next_token_probs(self, ids):
        """P(x_{t+1} = v | x_1..x_t) for every v: ids (T,) -> (V,), or (B, T) -> (B, V).

        Sums to 1 for every context, seen or not. An empty context gives the unigram model.
        """
        self._check_fitted()
        batch = numpy.asarray(ids)
        if batch.ndim == 2:
            return numpy.stack([self.next_token_probs(row) for row in batch])
        ids = self._check_ids(batch, "next_token_probs")
        context = ids[max(0, len(ids) - (self.n - 1)):]  # the last n-1 tokens (fewer at the start)
        V = self.vocab_size
        probs = numpy.full(V, 1.0 / V)  # P_0: uniform
        for m in range(1, len(context) + 2):
            h = context[len(context) - (m - 1):] if m > 1 else context[:0]
            h_key = int(self._ngram_keys(h, m - 1)[0]) if m > 1 else 0
            c_h = int(_lookup(self._ctx_keys[m], self._ctx_counts[m], numpy.array([h_key]))[0])
            lo, hi = numpy.searchsorted(self._keys[m], [h_key * V, (h_key + 1) * V])
            c_hv = numpy.zeros(V)
            c_hv[self._keys[m][lo:hi] - h_key * V] = self._counts[m][lo:hi]
            if self.smoothing == "add-k":
                if m == len(context) + 1:  # add-k uses only the longest context
                    probs = (c_hv + self.k) / (c_h + self.k * V)
            elif c_h > 0:
                probs = self.lam * c_hv / c_h + (1 - self.lam) * probs
        return probs

    def token_log_probs(self, ids) -> numpy.ndarray:
        """log P(x_t | x_<t) for t = 2..T (natural log): ids (T,) -> (T-1,).

        Vectorised: for each order m, every position's m-gram is looked up at once.
        """
        self._check_fitted()
        ids = self._check_ids(ids, "token_log_probs")
        T, V = len(ids), self.vocab_size
        targets = numpy.arange(1, T)                      # positions that get predicted
        history = numpy.minimum(targets, self.n - 1)      # tokens of context each one can use
        probs = numpy.full(T - 1, 1.0 / V) if T > 1 else numpy.zeros(0)
        for m in range(1, self.n + 1):
            # add-k reads only the longest context; interpolation mixes every order up to it
            uses_order = history == m - 1 if self.smoothing == "add-k" else history >= m - 1
            rows = numpy.flatnonzero(uses_order)
            if len(rows) == 0:
                continue
            keys = self._ngram_keys(ids, m)[targets[rows] - (m - 1)]          # m-gram ending at t
            c_hv = _lookup(self._keys[m], self._counts[m], keys)
            c_h = _lookup(self._ctx_keys[m], self._ctx_counts[m], keys // V)
            if self.smoothing == "add-k":
                probs[rows] = (c_hv + self.k) / (c_h + self.k * V)
            else:
                seen = c_h > 0
                mixed = self.lam * c_hv / numpy.maximum(c_h, 1) + (1 - self.lam) * probs[rows]
                probs[rows] = numpy.where(seen, mixed, probs[rows])
        return numpy.log(probs)

    def loss(self, ids) -> float:
        """Mean negative log-likelihood per predicted token, -1/(T-1) Σ_t log P(x_t | x_<t).

        The same number as the GPT's cross entropy on the shifted targets (natural log).
        """
        logp = self.token_log_probs(ids)
        if len(logp) == 0:
            raise UserError("loss needs at least 2 tokens (the first one is never predicted)")
        return float(-logp.mean())

    def perplexity(self, ids) -> float:
        """exp(loss): the size of a uniform choice that would be as surprised as this model."""
        return math.exp(self.loss(ids))

    # ----- checks -------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.vocab_size is None:
            raise RuntimeError("this NGramLM has not been fitted yet: call fit(ids, vocab_size) first")

    def _check_ids(self, ids, where: str) -> numpy.ndarray:
        arr = numpy.asarray(ids)
        if arr.size == 0:
            return arr.astype(numpy.int64).reshape(0)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise ValueError(f"{where} expects a 1-D sequence of integer token ids, got {arr.dtype} {arr.shape}")
        if arr.min() < 0 or arr.max() >= self.vocab_size:
            raise UserError(f"{where}: token ids must lie in [0, {self.vocab_size}) (the vocabulary "
                             f"given to fit), got values from {arr.min()} to {arr.max()}")
        return arr.astype(numpy.int64)

    def __repr__(self) -> str:
        knob = f"k={self.k}" if self.smoothing == "add-k" else f"lam={self.lam}"
        return f"NGramLM(n={self.n}, smoothing={self.smoothing!r}, {knob}, vocab_size={self.vocab_size})"


def _lookup(sorted_keys: numpy.ndarray, counts: numpy.ndarray, keys: numpy.ndarray) -> numpy.ndarray:
    """The count of each key, 0 for keys never seen (binary search in the sorted table)."""
    if len(sorted_keys) == 0:
        return numpy.zeros(len(keys), dtype=numpy.int64)
    where = numpy.minimum(numpy.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return numpy.where(sorted_keys[where] == keys, counts[where], 0)
