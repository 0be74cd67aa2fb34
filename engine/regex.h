// Regular expressions for constrained decoding: a pattern (the subset of Python's re syntax
// below, matched as re.fullmatch does) compiled to a deterministic automaton over UTF-8 bytes,
// emitted as one rule of a grammar builder (engine/grammar.h).
//
// Syntax: literals (UTF-8), '.', classes [abc] [a-z] [^...] (over Unicode code points),
// escapes \d \D \w \W \s \S \n \t \r \f \v \0 \xHH \uHHHH \UHHHHHHHH and escaped
// metacharacters, groups ( ) (?: ) and named groups (?P<name> ) (?<name> ), alternation |,
// quantifiers * + ? {n} {n,} {n,m} (lazy forms accepted: with full-match semantics they match
// the same set), ^ at the start and $ at the end (no-ops under full match). Anything else
// (backreferences, lookaround, inline flags, possessive quantifiers) is an error naming it.
// '.' matches any code point except '\n', as in Python. \d \w \s are ASCII-only.
//
// Limits: patterns up to CS_REGEX_MAX_LEN bytes, nesting up to 64, repetition bounds up to
// 1000, at most CS_REGEX_MAX_DFA_STATES states after determinisation, and, for bounded time
// and memory, at most 262,144 NFA states and edges after expanding repetition and 2^21
// determinisation steps: a pattern past any of them is an error.
#ifndef CS_REGEX_H
#define CS_REGEX_H

#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"
#include "grammar.h"

#define CS_REGEX_MAX_LEN 16384
#define CS_REGEX_MAX_DFA_STATES 20000

// Adds a rule to b matching exactly the strings the pattern fully matches; returns the rule
// id, or -1 with a one-line reason in err (CS_ERR_INVALID-worthy: the caller reports it).
int32_t cs_regex_compile(cs_gram_builder *b, const char *pattern, size_t len, char *err, size_t errlen);

// A whole grammar of one pattern.
cs_status cs_regex_grammar(const char *pattern, size_t len, cs_grammar **out, char *err, size_t errlen);

#endif
