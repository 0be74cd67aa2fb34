#!/usr/bin/env python3
"""Writes tests/fixtures/regex_cases.txt: (pattern, string, expected) cases for tests/test_regex.c.

    python3 tools/make_regex_cases.py

Truth comes from Python's re.fullmatch(pattern, string, re.ASCII) (engine/regex.h: \\d \\w \\s
are ASCII-only, '.' is any code point but '\\n'), never from our C code. Cases are the
hand-written patterns below (every syntax element, Unicode classes, realistic formats), each
with its own strings plus a shared set of probes, and a deterministic batch of random patterns
with strings sampled from them and edits of those. Patterns using (?<name>...), which engine/regex.h
accepts but Python's re does not, are checked with the equivalent (?P<name>...).

One case per line, three tab-separated fields: 1 (matches) or 0, the pattern, the string.
Fields are UTF-8 with backslash escapes for '\\\\', tab, newline and other control bytes:
\\\\ \\t \\n \\xHH.
"""
import os
import random
import re
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "regex_cases.txt")

PROBES = ["", "a", "b", "ab", "abc", "aaa", "A", "0", "42", " ", "_", "-", "\n", "a\n", "é", "日本", "😀"]

# (pattern, strings): strings that should match and near misses.
CASES = [
    # literals, UTF-8 literals, the empty pattern
    ("abc", ["abc", "ab", "abcd", "abd", "ABC"]),
    ("", ["", "a"]),
    ("é", ["é", "e", "é"]),
    ("日本語", ["日本語", "日本", "日本語!"]),
    ("😀+", ["😀", "😀😀😀", "😁", "😀😁"]),
    ("a b", ["a b", "ab", "a  b"]),
    ("]", ["]", "a"]),
    ("}", ["}", "a"]),
    # '.'
    (".", ["x", "\n", "\r", "\t", "é", "中", "😀", "\x00", "\x7f", "\u0080", "\u07ff", "\u0800", "\uffff",
           "\U00010000", "\U0010ffff", "\ue000", "ab"]),
    ("a.c", ["abc", "a\nc", "aéc", "a😀c", "ac", "abbc"]),
    (".*", ["", "anything at all", "ü😀x", "line\nbreak"]),
    ("...", ["abc", "é中😀", "ab", "a\nb"]),
    # classes
    ("[abc]", ["a", "b", "c", "d", "", "ab"]),
    ("[a-z]+", ["hello", "Hello", "", "abc1"]),
    ("[^abc]", ["d", "a", "é", "\n", "😀", ""]),
    ("[^a-z]*", ["ABC123", "abc", "", "É\n"]),
    ("[]a]", ["]", "a", "b"]),
    ("[^]a]", ["]", "a", "b"]),
    ("[a-]", ["a", "-", "b"]),
    ("[-a]", ["a", "-", "b"]),
    ("[a\\-z]", ["a", "-", "z", "b"]),
    ("[\\d-]+", ["1-2", "--", "a"]),
    ("[\\d]", ["5", "a", "٣"]),
    ("[\\D]", ["a", "5", "é", "٣"]),
    ("[\\w.]+", ["a.b_c9", "a-b", "é"]),
    ("[\\s]", [" ", "\t", "\n", "\r", "\f", "\v", "a", "\u00a0", "\u2003"]),
    ("[^\\s]", ["a", " ", "\u00a0"]),
    ("[\\W]", ["!", "a", "_", "é", " "]),
    ("[\\S\\s]", ["a", "\n", "😀"]),
    ("[é-ë]", ["é", "ê", "ë", "è", "ì", "e"]),
    ("[α-ω]+", ["αβγ", "ωα", "Α", "a"]),
    ("[^α-ω]", ["a", "α", "Α", "ω"]),
    ("[\\u4e00-\\u9fff]+", ["中文", "中a", "〇", "一"]),
    ("[😀-😂]", ["😀", "😁", "😂", "😃", "😿"]),
    ("[\\x00-\\x7f]+", ["abc\x00\x7f", "é", "\x01"]),
    ("[^\\x00-\\x7f]", ["é", "a", "😀", "\u0080"]),
    ("[\\U0001F600-\\U0001F64F]", ["😀", "🙏", "🚀"]),
    ("[\\u0100-\\uffff]", ["Ā", "\u07ff", "\u0800", "\uffff", "\U00010000", "ÿ"]),
    ("[\\u00ff-\\U00010000]", ["ÿ", "\u0100", "\ud7ff", "\ue000", "\U00010000", "\U00010001", "þ"]),
    ("[\\ud7fe-\\ue001]", ["\ud7fe", "\ud7ff", "\ue000", "\ue001", "\ue002"]),
    ("[^\\u0080-\\U0010ffff]", ["a", "\x7f", "\u0080", "😀"]),
    ("[\\b]", ["\b", "b"]),
    ("[.]", [".", "a"]),
    ("[*+?{}()|^$]+", ["*+?", "{}()|^$", "a"]),
    ("[\\]]", ["]", "\\"]),
    ("[\\\\]", ["\\", "]"]),
    ("[a-c\\d_]+", ["a1_c", "d"]),
    ("[^\\n]+", ["abc", "a\nb"]),
    ("[\\t-\\r]", ["\t", "\n", "\x0b", "\x0c", "\r", " "]),
    ("[\\0]", ["\x00", "0"]),
    ("[\\x41-\\x43]", ["A", "B", "C", "D"]),
    ("[^\\W\\d]+", ["abc_", "a1", "é"]),
    ("[^\\D]", ["7", "a"]),
    ("[ -~]+", ["printable ASCII!", "tab\there"]),
    ("[[]", ["[", "a"]),
    # escapes
    ("\\d+", ["0123456789", "12a", "", "٣"]),
    ("\\D+", ["abc", "a1"]),
    ("\\w+", ["hello_World9", "héllo", "a-b"]),
    ("\\W+", ["!@# ", "a"]),
    ("\\s+", [" \t\n\r\f\v", "\u00a0", "\u2028"]),
    ("\\S+", ["abc", "a b"]),
    ("\\n\\t\\r\\f\\v", ["\n\t\r\f\v", "ntrfv"]),
    ("\\0", ["\x00", "0"]),
    ("\\012", ["\n", "012"]),
    ("\\a", ["\x07", "a"]),
    ("\\x41\\x62", ["Ab", "x41"]),
    ("\\xe9", ["é", "\xe9e"]),
    ("\\u00e9\\u4e2d", ["é中", "é"]),
    ("\\U0001F600", ["😀", "😁"]),
    ("\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\^\\$\\\\", [".*+?()[]{}|^$\\", "a"]),
    ("\\-\\/\\\"\\'\\ \\#\\&\\~", ["-/\"' #&~", "a"]),
    ("\\é", ["é", "e"]),
    # groups
    ("(ab)+", ["ab", "abab", "", "aba"]),
    ("(?:ab)+", ["ab", "ababab", "abb"]),
    ("(?P<x>a|b)c", ["ac", "bc", "cc"]),
    ("(?<year>\\d{4})-(?<month>\\d\\d)", ["2024-05", "24-05", "2024-5"]),
    ("((a))", ["a", "aa"]),
    ("()", ["", "a"]),
    ("(a|)", ["a", ""]),
    ("(|a)b", ["b", "ab", "aab"]),
    ("(((((((((((a)))))))))))", ["a", ""]),
    # alternation
    ("a|b", ["a", "b", "ab", ""]),
    ("cat|dog|bird", ["cat", "dog", "bird", "cats", "do"]),
    ("a|", ["a", "", "b"]),
    ("|", ["", "a"]),
    ("(a|b|c)*", ["", "abcabc", "abd"]),
    ("ab|cd|", ["ab", "cd", "", "abcd"]),
    ("café|naïve", ["café", "naïve", "cafe"]),
    # quantifiers
    ("a*", ["", "a", "aaaaaaaa", "b"]),
    ("a+", ["", "a", "aaaa", "ab"]),
    ("a?", ["", "a", "aa"]),
    ("a{3}", ["aa", "aaa", "aaaa"]),
    ("a{2,}", ["a", "aa", "aaaaaaa"]),
    ("a{2,4}", ["a", "aa", "aaa", "aaaa", "aaaaa"]),
    ("a{,2}", ["", "a", "aa", "aaa"]),
    ("a{,}", ["", "aaaa"]),
    ("a{0}", ["", "a"]),
    ("a{0,0}b", ["b", "ab"]),
    ("(ab){2,3}", ["ab", "abab", "ababab", "abababab"]),
    ("a*?", ["", "aaa"]),
    ("a+?b", ["ab", "aab", "b"]),
    ("a??", ["", "a"]),
    ("a{2,3}?", ["a", "aa", "aaa", "aaaa"]),
    ("a{2}?", ["aa", "a"]),
    ("[ab]{3}", ["aba", "ab", "abab", "abc"]),
    (".{2,3}", ["é😀", "abc", "a", "abcd"]),
    ("(a|bc){2,}", ["abc", "bcbc", "a", "aaa"]),
    ("(a*)*", ["", "aaa", "b"]),
    ("(a*)+b", ["b", "aab", "a"]),
    ("(a?){3}", ["", "aaa", "aaaa"]),
    ("x{1000}", ["x" * 1000, "x" * 999, "x" * 1001]),
    # bounded repetition of variable-width parts (a string can end in several iterations)
    ("(ab|a){2,4}", ["aa", "abab", "aba", "ababab", "abababab", "ababababa", "a", "b"]),
    ("(\\w+\\s?){1,3}", ["ab cd ef", "ab cd ef gh", "abcdefgh", "ab  cd", "a b c "]),
    ("(a|bc){0,3}d", ["d", "abcad", "bcbcbcd", "aaaad", "bcd"]),
    ("(a?){2,3}b", ["b", "ab", "aab", "aaab", "aaaab"]),
    ("(.{0,2},){1,3}", ["é,", "ab,,", "abc,", "a,b,c,", "a,b,c,d,"]),
    ("(ab){0,1000}c", ["c", "ab" * 1000 + "c", "ab" * 1001 + "c", "ab" * 500 + "c"]),
    ("\\d{1,1000}", ["1", "5" * 1000, "5" * 1001]),
    # braces that are not quantifiers
    ("a{", ["a{", "a"]),
    ("a{x}", ["a{x}", "a"]),
    ("a{1,2", ["a{1,2", "a"]),
    ("{", ["{"]),
    ("a{}", ["a{}", "a"]),
    ("a{ 1}", ["a{ 1}", "a"]),
    ("x{,", ["x{,", "x"]),
    ("{a", ["{a"]),
    # anchors (no-ops at the ends)
    ("^abc$", ["abc", "abc\n", "ab"]),
    ("^a|^b", ["a", "b", "ab"]),
    ("(^a)", ["a"]),
    ("^$", ["", "\n"]),
    ("a$", ["a", "a\n"]),
    ("^", ["", "a"]),
    ("$", ["", "a"]),
    ("^(a|b)$", ["a", "b", "ab"]),
    ("(^a|b$)", ["a", "b"]),
    ("^^a$$", ["a"]),
    ("(^a)?b", ["ab", "b"]),
    # realistic formats
    ("\\d{4}-\\d{2}-\\d{2}", ["2024-01-31", "2024-1-31", "20240131", "2024-01-311"]),
    ("[\\w.+-]+@[\\w-]+\\.[\\w.]+", ["john.doe+x@example.co.uk", "a@b.c", "@b.c", "a@b", "a b@c.d"]),
    ("\\(\\d{3}\\) \\d{3}-\\d{4}", ["(555) 123-4567", "555 123-4567", "(555) 1234567"]),
    ("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
     ["123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-42661417400", "123E4567-e89b-12d3-a456-426614174000"]),
    ("(\\d{1,3}\\.){3}\\d{1,3}", ["192.168.0.1", "1.2.3", "1234.1.1.1", "1.1.1.1."]),
    ("-?(0|[1-9]\\d*)(\\.\\d+)?([eE][+-]?\\d+)?", ["0", "-12.5e+3", "012", "1.", "1e5", "-", "3.14"]),
    ("(true|false)", ["true", "false", "tru", "truefalse"]),
    ("#[0-9a-fA-F]{6}", ["#00ff7F", "#00ff7", "00ff7F"]),
    ("(ab|a)(bc|c)", ["abc", "abbc", "ac"]),
    ("(a|ab)(c|bcd)(d*)", ["abcd", "acd", "abcdd", "abd"]),
    ("(a|b)*abb", ["abb", "aababb", "ab", "abba"]),
    ("(x+x+)+y", ["xxy", "xxxxxxxxy", "xy", "xxxxxxxxxxxxxxxxxxxx"]),
    ("(.*a){3}", ["aaa", "xaxaxa", "aa", "xaxaxax"]),
    ("\\w+( \\w+)*", ["hello big world", "hello  world", "hello "]),
    ("[A-Z][a-z]*( [A-Z][a-z]*)*", ["New York City", "New york", "N Y"]),
    ("(Mon|Tue|Wed)day", ["Monday", "Tueday", "Friday"]),
    ("\"([^\"\\\\]|\\\\.)*\"", ["\"abc\"", "\"a\\\"b\"", "\"a\"b\"", "\"é😀\"", "\"\\\""]),
    ("[^\"\\\\]*", ["no quotes", "a\"b", "back\\slash"]),
    ("(\\+\\d{1,3} )?\\d{3}-\\d{4}", ["+44 555-1234", "555-1234", "+ 555-1234"]),
    ("\\s*\\w+\\s*=\\s*\\d+\\s*", [" x = 1 ", "x=1", "x = a"]),
    ("(?:[01]\\d|2[0-3]):[0-5]\\d(?::[0-5]\\d)?", ["23:59", "24:00", "09:30:15", "9:30"]),
    ("[a-zA-Z_][a-zA-Z0-9_]*", ["_var1", "1var", "var-x"]),
    ("(0|1)*1(0|1){3}", ["1000", "01111", "100", "11000"]),
]


def to_python(p):
    """The same pattern in Python's syntax: (?<name> is spelled (?P<name> there."""
    return re.sub(r"\(\?<(?![=!])", "(?P<", p)


# Random patterns: leaves (pattern text, strings it matches), combined by concatenation,
# alternation and quantifiers. Each pattern comes with strings sampled from it (matching) and
# one-code-point edits of them (mostly not), so both outcomes are well represented.
LEAVES = [("a", ["a"]), ("b", ["b"]), ("é", ["é"]), ("[ab]", ["a", "b"]), ("[^a]", ["b", "é", "\n", "😀"]),
          (".", ["a", "é", "😀"]), ("\\w", ["a", "_", "9"]), ("\\d", ["7"]), ("\\s", [" ", "\n"]),
          ("[a-cé-ë]", ["c", "ê"]), ("[^\\x00-\\x7f]", ["é", "😀"]), ("[\\u00e0-\\U0001F600]", ["é", "😀"]),
          ("(?:)", [""]), ("\\.", ["."])]
QUANTS = ["*", "+", "?", "{2}", "{1,2}", "{0,3}", "{2,}", "*?", "{,2}", "{3,5}", "+?"]


def random_tree(rng, depth=0):
    r = rng.random()
    if depth >= 3 or r < 0.35:
        return ("leaf",) + rng.choice(LEAVES)
    if r < 0.6:
        return ("cat", [random_tree(rng, depth + 1) for _ in range(rng.randint(2, 3))])
    if r < 0.75:
        return ("alt", [random_tree(rng, depth + 1) for _ in range(rng.randint(2, 3))])
    return ("rep", random_tree(rng, depth + 1), rng.choice(QUANTS))


def render(t):
    if t[0] == "leaf":
        return t[1]
    if t[0] == "cat":
        return "".join("(?:%s)" % render(c) if c[0] == "alt" else render(c) for c in t[1])
    if t[0] == "alt":
        return "|".join(render(c) for c in t[1])
    return "(%s)%s" % (render(t[1]), t[2])


def sample(rng, t):
    """A string the tree matches."""
    if t[0] == "leaf":
        return rng.choice(t[2])
    if t[0] == "cat":
        return "".join(sample(rng, c) for c in t[1])
    if t[0] == "alt":
        return sample(rng, rng.choice(t[1]))
    m = re.fullmatch(r"([*+?])\??|\{(\d*)(,?)(\d*)\}\??", t[2])
    if m.group(1):
        lo, hi = {"*": (0, 3), "+": (1, 3), "?": (0, 1)}[m.group(1)]
    else:
        lo = int(m.group(2) or 0)
        hi = lo if not m.group(3) else int(m.group(4)) if m.group(4) else lo + 3
    return "".join(sample(rng, t[1]) for _ in range(rng.randint(lo, hi)))


def random_strings(rng, t):
    out = set()
    for _ in range(4):
        s = sample(rng, t)
        out.add(s)
        if s:
            k = rng.randrange(len(s))
            out.add(s[:k] + s[k + 1:])
            out.add(s[:k] + rng.choice("ab\né😀") + s[k:])
    return sorted(x for x in out if len(x) <= 16)


def escape(s):
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def valid_utf8(s):
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def main():
    warnings.simplefilter("ignore", FutureWarning)  # "[[]" is a literal '[' today, as in our syntax
    rng = random.Random(1234)
    lines = []
    for pattern, strings in CASES:
        rx = re.compile(to_python(pattern), re.ASCII)
        seen = set()
        for s in strings + PROBES:
            if s in seen or not valid_utf8(s):  # lone surrogates have no UTF-8 form
                continue
            seen.add(s)
            lines.append("%d\t%s\t%s" % (rx.fullmatch(s) is not None, escape(pattern), escape(s)))
    patterns = set()
    while len(patterns) < 250:
        t = random_tree(rng)
        p = render(t)
        if p in patterns:
            continue
        patterns.add(p)
        rx = re.compile(p, re.ASCII)
        for s in random_strings(rng, t):
            lines.append("%d\t%s\t%s" % (rx.fullmatch(s) is not None, escape(p), escape(s)))
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    n_match = sum(line[0] == "1" for line in lines)
    print("%s: %d cases (%d matching), %d hand-written patterns" % (OUT, len(lines), n_match, len(CASES)))


if __name__ == "__main__":
    main()
