"""Sizes known only at run time, as import sees them: polynomials in the free sizes of the inputs.

Exporters write a dynamic batch as arithmetic on shapes (Shape → Gather → Mul → Concat →
Reshape). Import evaluates that arithmetic on `Dim`s: `batch * 2` is a Dim, and a Reshape
to `[6, batch * 2, 8]` becomes graphdef's `[6, -1, 8]`. A Dim stands for a generic size:
never equal to a particular number, larger than any constant. A question it cannot answer
(`batch // 3`) raises Unsupported: the import says which node needs a size it cannot know.
"""
from __future__ import annotations

from collections import Counter

from .proto import Unsupported


class Dim:
    """A size: a polynomial with integer coefficients, {monomial (sorted symbols): coefficient}."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict):
        self.terms = {m: c for m, c in terms.items() if c}

    @staticmethod
    def symbol(name: str) -> Dim:
        return Dim({(name,): 1})

    @staticmethod
    def of(value) -> Dim:
        return value if isinstance(value, Dim) else Dim({(): int(value)})

    def simplified(self):
        """An int when no symbol is left, else the Dim."""
        if not self.terms:
            return 0
        return self.terms[()] if list(self.terms) == [()] else self

    def __add__(self, other):
        if not isinstance(other, (Dim, int)):
            return NotImplemented
        terms = Counter(self.terms)
        terms.update(Dim.of(other).terms)
        return Dim(terms).simplified()

    __radd__ = __add__

    def __neg__(self):
        return Dim({m: -c for m, c in self.terms.items()})

    def __sub__(self, other):
        return self + -Dim.of(other)

    def __rsub__(self, other):
        return -self + other

    def __mul__(self, other):
        if not isinstance(other, (Dim, int)):
            return NotImplemented
        terms = Counter()
        for m1, c1 in self.terms.items():
            for m2, c2 in Dim.of(other).terms.items():
                terms[tuple(sorted(m1 + m2))] += c1 * c2
        return Dim(terms).simplified()

    __rmul__ = __mul__

    def __floordiv__(self, other):
        quotient = self.divided(Dim.of(other))
        if quotient is None:
            raise Unsupported(f"a size {self} // {other} that depends on the input sizes")
        return quotient

    def __rfloordiv__(self, other):
        quotient = Dim.of(other).divided(self)
        if quotient is None:
            raise Unsupported(f"a size {other} // {self} that depends on the input sizes")
        return quotient

    __truediv__, __rtruediv__ = __floordiv__, __rfloordiv__

    def __mod__(self, other):
        if self.divided(Dim.of(other)) is None:
            raise Unsupported(f"a size {self} % {other} that depends on the input sizes")
        return 0

    def divided(self, other: Dim):
        """self / other when exact for every size (other a single term), else None."""
        if len(other.terms) != 1:
            return self.simplified() if self == other else None
        (divisor, c), = other.terms.items()
        terms = {}
        for m, k in self.terms.items():
            rest = Counter(m)
            rest.subtract(divisor)
            if k % c or min(rest.values(), default=0) < 0:
                return None
            terms[tuple(sorted(rest.elements()))] = k // c
        return Dim(terms).simplified()

    def __eq__(self, other):
        return isinstance(other, Dim) and self.terms == other.terms

    def __hash__(self):
        return hash(frozenset(self.terms.items()))

    # a generic size is larger than any constant (so broadcasting against 1 and bounds checks pass)
    def __lt__(self, other):
        return isinstance(other, Dim) and _compare(self, other) < 0

    def __gt__(self, other):
        return not isinstance(other, Dim) or _compare(self, other) > 0

    def __le__(self, other):
        return self == other or self < other

    def __ge__(self, other):
        return self == other or self > other

    def __bool__(self):
        return True

    def __index__(self):
        raise TypeError(f"the size {self} is known only at run time")

    __int__ = __index__

    def __repr__(self):
        def term(m, c):
            return "*".join(([str(c)] if c != 1 or not m else []) + list(m))
        return " + ".join(term(m, c) for m, c in sorted(self.terms.items()))


def _compare(a: Dim, b: Dim) -> int:
    difference = a - b
    if isinstance(difference, int):
        return (difference > 0) - (difference < 0)
    raise Unsupported(f"a comparison of the sizes {a} and {b}")
