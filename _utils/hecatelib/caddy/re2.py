"""Would Go's regexp package accept this pattern? Caddy compiles every regexp of its config
(``path_regexp``, ``header_regexp``) with Go's ``regexp.Compile``, i.e. RE2 syntax with Perl flags.
Python's ``re`` accepts things Go refuses (``\\Z``, lookarounds, backreferences, possessive
quantifiers, ``(?x)``...) and refuses things Go accepts (``\\z``, ``\\pL``, ``[[:alpha:]]``), so the
validator asks Go's rules, not Python's.

``problem(pattern)`` returns Go's error text or None. It is a port of the acceptance rules of Go's
src/regexp/syntax/parse.go (``parse``, ``parsePerlFlags``, ``parseRepeat``, ``repeat`` with
``repeatIsValid``, ``parseClass``, ``parseNamedClass``, ``parseUnicodeClass``, ``parseEscape``); it
builds no tree. Not ported: the compiled-size and rune-count limits (unreachable with hecate's
4096-character values). Unicode table names are those of the Go that builds Caddy 2.11 (a newer Go may
know more scripts; they are refused here until added to SCRIPTS).
"""

MAX_REPEAT = 1000  # parse.go maxRepeat: any single count, and the product of nested counts
MAX_DEPTH = 1000  # parse.go maxHeight (approximated by the nesting depth of groups)
POSIX_CLASSES = set("alnum alpha ascii blank cntrl digit graph lower print punct space upper word xdigit".split())
PERL_CLASSES = set("dDsSwW")  # perl_groups.go
# unicode.Categories (src/unicode/tables.go)
CATEGORIES = set("C Cc Cf Co Cs L Ll Lm Lo Lt Lu M Mc Me Mn N Nd Nl No P Pc Pd Pe Pf Pi Po Ps S Sc Sk Sm So Z Zl Zp Zs".split())
SPECIAL_TABLES = {"Any", "Assigned", "Ascii", "Lc"}  # parse.go unicodeTable
OCTAL = "01234567"
HEX = "0123456789abcdefABCDEF"


class _Refused(Exception):
    pass


def problem(pattern):
    """Go's reason for refusing ``pattern`` (like ``invalid escape sequence: `\\Z```), or None."""
    try:
        _Parser(pattern).parse()
    except _Refused as exc:
        return str(exc)
    return None


def _isalnum(c):
    return c.isascii() and c.isalnum()


class _Frame:
    """One open group: ``top`` is the weight of the expression a repetition would apply to (None: nothing,
    as after ``(`` or ``|``); ``weight`` the largest product of nested counted repetitions inside."""

    def __init__(self):
        self.top = None
        self.weight = 1


class _Parser:
    def __init__(self, pattern):
        self.s = pattern
        self.i = 0
        self.frames = [_Frame()]
        self.last_repeat = False

    def fail(self, code, expr):
        raise _Refused(f"{code}: `{expr[:40]}`")

    def peek(self, k=0):
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def atom(self, weight=1):
        frame = self.frames[-1]
        frame.top = weight
        frame.weight = max(frame.weight, weight)

    def parse(self):
        if any("\ud800" <= c <= "\udfff" for c in self.s):
            self.fail("invalid UTF-8", self.s)
        while self.i < len(self.s):
            start, c = self.i, self.s[self.i]
            repeat = False
            if c == "(":
                self.group()
            elif c == "|":
                self.frames[-1].top = None
                self.i += 1
            elif c == ")":
                if len(self.frames) == 1:
                    self.fail("unexpected )", self.s)
                inner = self.frames.pop()
                self.atom(inner.weight)
                self.i += 1
            elif c == "[":
                self.char_class()
                self.atom()
            elif c in "*+?":
                self.i += 1
                self.repeat(start, 0, 0, counted=False)
                repeat = True
            elif c == "{":
                counts = self.counts()
                if counts is None:  # not a repetition: a literal {
                    self.i += 1
                    self.atom()
                else:
                    lo, hi = counts
                    if lo < 0 or lo > MAX_REPEAT or hi > MAX_REPEAT or (hi >= 0 and lo > hi):
                        self.fail("invalid repeat count", self.s[start : self.i])
                    self.repeat(start, lo, hi, counted=True)
                    repeat = True
            elif c == "\\":
                self.escape_outside_class()
            else:
                self.i += 1
                self.atom()
            self.last_repeat = repeat
        if len(self.frames) > 1:
            self.fail("missing closing )", self.s)

    def repeat(self, start, lo, hi, counted):
        """parse.go repeat: an optional lazy ``?``, no stacked operators, something to repeat, and
        (repeatIsValid) no more than MAX_REPEAT copies of the innermost thing."""
        if self.peek() == "?":
            self.i += 1
        if self.last_repeat:
            self.fail("invalid nested repetition operator", self.s[start : self.i])
        frame = self.frames[-1]
        if frame.top is None:
            self.fail("missing argument to repetition operator", self.s[start : self.i])
        weight = frame.top
        if counted:
            most = hi if hi >= 0 else lo
            if hi == 0:
                weight = 1
            elif most > 0:
                weight = most * weight
            if (lo >= 2 or hi >= 2) and weight > MAX_REPEAT:
                self.fail("invalid repeat count", self.s[start : self.i])
        self.atom(weight)

    def counts(self):
        """parse.go parseRepeat: ``{n}``, ``{n,}``, ``{n,m}`` -> (n, m) with m = -1 for no maximum;
        None when the text is not a repetition. Consumes it when it is."""
        j = self.i + 1

        def number(j):
            k = j
            while k < len(self.s) and self.s[k] in "0123456789":
                k += 1
            if k == j or (k - j >= 2 and self.s[j] == "0"):  # parseInt: digits, no leading zero
                return None, j
            return (int(self.s[j:k]) if k - j <= 8 else -1), k

        lo, j = number(j)
        if lo is None or j >= len(self.s):
            return None
        if self.s[j] != ",":
            hi = lo
        else:
            j += 1
            if j >= len(self.s):
                return None
            if self.s[j] == "}":
                hi = -1
            else:
                hi, j = number(j)
                if hi is None:
                    return None
                if hi < 0:
                    lo = -1
        if j >= len(self.s) or self.s[j] != "}":
            return None
        self.i = j + 1
        return lo, hi

    def group(self):
        """parse.go parsePerlFlags for ``(?``; a plain ``(`` opens a capture."""
        t = self.s[self.i :]
        if not t.startswith("(?"):
            self.i += 1
            self.open()
            return
        if (len(t) > 4 and t[2:4] == "P<") or (len(t) > 3 and t[2] == "<"):
            end = t.find(">")
            if end < 0:
                self.fail("invalid named capture", t)
            name = t[4 if t[2] == "P" else 3 : end]
            if not name or not all(c == "_" or _isalnum(c) for c in name):
                self.fail("invalid named capture", t[: end + 1])
            self.i += end + 1
            self.open()
            return
        j, sign, saw_flag = 2, 1, False
        while j < len(t):
            c = t[j]
            j += 1
            if c in "imsU":
                saw_flag = True
            elif c == "-" and sign > 0:
                sign, saw_flag = -1, False
            elif c in ":)" and (sign > 0 or saw_flag):
                self.i += j
                if c == ":":
                    self.open()
                return
            else:
                break
        self.fail("invalid or unsupported Perl syntax", t[:j])

    def open(self):
        if len(self.frames) > MAX_DEPTH:
            self.fail("expression nests too deeply", self.s[:40])
        self.frames.append(_Frame())

    def escape_outside_class(self):
        t = self.s[self.i :]
        if len(t) >= 2:
            if t[1] in "AbBz":
                self.i += 2
                self.atom()
                return
            if t[1] == "C":
                self.fail("invalid escape sequence", t[:2])
            if t[1] == "Q":
                end = t.find("\\E", 2)
                literal = t[2:] if end < 0 else t[2:end]
                self.i += len(t) if end < 0 else end + 2
                if literal:
                    self.atom()
                return
        if self.unicode_class() or self.perl_class():
            self.atom()
            return
        self.escape()
        self.atom()

    def unicode_class(self):
        """parse.go parseUnicodeClass: ``\\pN``, ``\\p{Name}``, ``\\P...``, ``\\p{^Name}``. True when consumed."""
        t = self.s[self.i :]
        if len(t) < 2 or t[0] != "\\" or t[1] not in "pP":
            return False
        if len(t) < 3:
            self.fail("invalid character class range", t)
        if t[2] != "{":
            seq, name = t[:3], t[2]
        else:
            end = t.find("}")
            if end < 0:
                self.fail("invalid character class range", t)
            seq, name = t[: end + 1], t[3:end]
        if name.startswith("^"):
            name = name[1:]
        if not _known_table(name):
            self.fail("invalid character class range", seq)
        self.i += len(seq)
        return True

    def perl_class(self):
        if self.peek() == "\\" and self.peek(1) in PERL_CLASSES and self.peek(1):
            self.i += 2
            return True
        return False

    def escape(self):
        """parse.go parseEscape: one escaped character (consumed), or Go's error."""
        t = self.s[self.i :]
        if len(t) < 2:
            self.fail("trailing backslash at end of expression", "")
        c = t[1]
        if c.isascii() and not _isalnum(c):
            self.i += 2
            return
        if c in "1234567" and not (len(t) > 2 and t[2] in OCTAL):
            self.fail("invalid escape sequence", t[:2])  # a single digit is a backreference: not in RE2
        if c in OCTAL:
            j = 2
            while j < 4 and j < len(t) and t[j] in OCTAL:
                j += 1
            self.i += j
            return
        if c == "x" and len(t) > 2:
            if t[2] == "{":
                end = t.find("}", 3)
                digits = t[3:end] if end > 0 else ""
                if digits and all(d in HEX for d in digits) and int(digits, 16) <= 0x10FFFF:
                    self.i += end + 1
                    return
            elif len(t) > 3 and t[2] in HEX and t[3] in HEX:
                self.i += 4
                return
        if c in "afnrtv":
            self.i += 2
            return
        self.fail("invalid escape sequence", t[:2])

    def char_class(self):
        """parse.go parseClass (Perl flags: ``-`` is fine anywhere)."""
        whole = self.s[self.i :]
        self.i += 1
        if self.peek() == "^":
            self.i += 1
        first = True
        while first or self.peek() != "]":
            if self.i >= len(self.s):
                self.fail("missing closing ]", whole)
            first = False
            t = self.s[self.i :]
            if len(t) > 2 and t.startswith("[:"):
                end = t.find(":]", 2)
                if end >= 0:
                    name = t[2:end].removeprefix("^")
                    if name not in POSIX_CLASSES:
                        self.fail("invalid character class range", t[: end + 2])
                    self.i += end + 2
                    continue
            if self.unicode_class() or self.perl_class():
                continue
            start = self.i
            low = self.class_char(whole)
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                high = self.class_char(whole)
                if high < low:
                    self.fail("invalid character class range", self.s[start : self.i])
        self.i += 1

    def class_char(self, whole):
        """parse.go parseClassChar: the code point of one class character (escapes as parseEscape)."""
        if self.i >= len(self.s):
            self.fail("missing closing ]", whole)
        if self.peek() != "\\":
            self.i += 1
            return ord(self.s[self.i - 1])
        start = self.i
        self.escape()
        text = self.s[start + 1 : self.i]
        if text[0] == "x":
            return int(text[2:-1] if text[1] == "{" else text[1:], 16)
        if text[0] in OCTAL:
            return int(text, 8)
        return ord({"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}.get(text, text))


def _canonical(name):
    """parse.go canonicalName: no ``_``, ``-`` or spaces; first letter upper-case, the rest lower-case."""
    name = name.replace("_", "").replace("-", "").replace(" ", "")
    return name[:1].upper() + name[1:].lower()


CATEGORY_ALIASES = {_canonical(a) for a in (
    "Cased_Letter Close_Punctuation Combining_Mark Connector_Punctuation Control Currency_Symbol Dash_Punctuation "
    "Decimal_Number Enclosing_Mark Final_Punctuation Format Initial_Punctuation Letter Letter_Number Line_Separator "
    "Lowercase_Letter Mark Math_Symbol Modifier_Letter Modifier_Symbol Nonspacing_Mark Number Open_Punctuation Other "
    "Other_Letter Other_Number Other_Punctuation Other_Symbol Paragraph_Separator Private_Use Punctuation Separator "
    "Space_Separator Spacing_Mark Surrogate Symbol Titlecase_Letter Unassigned Uppercase_Letter cntrl digit punct"
).split()}  # unicode.CategoryAliases (Unicode's PropertyValueAliases for gc)  # fmt: skip


# unicode.Scripts of the Go that builds Caddy 2.11 whose key is already canonical (one word): Go looks a
# script up by its canonical name, so Old_Italic or SignWriting are not found (Caddy refuses them too).
SCRIPTS = set(
    "Adlam Ahom Arabic Armenian Avestan Balinese Bamum Batak Bengali Bhaiksuki Bopomofo Brahmi Braille "
    "Buginese Buhid Carian Chakma Cham Cherokee Chorasmian Common Coptic Cuneiform Cypriot Cyrillic "
    "Deseret Devanagari Dogra Duployan Elbasan Elymaic Ethiopic Georgian Glagolitic Gothic Grantha Greek "
    "Gujarati Gurmukhi Han Hangul Hanunoo Hatran Hebrew Hiragana Inherited Javanese Kaithi Kannada "
    "Katakana Kawi Kharoshthi Khmer Khojki Khudawadi Lao Latin Lepcha Limbu Lisu Lycian Lydian Mahajani "
    "Makasar Malayalam Mandaic Manichaean Marchen Medefaidrin Miao Modi Mongolian Mro Multani Myanmar "
    "Nabataean Nandinagari Newa Nko Nushu Ogham Osage Osmanya Palmyrene Phoenician Rejang Runic "
    "Samaritan Saurashtra Sharada Shavian Siddham Sinhala Sogdian Soyombo Sundanese Syriac Tagalog "
    "Tagbanwa Takri Tamil Tangsa Tangut Telugu Thaana Thai Tibetan Tifinagh Tirhuta Toto Ugaritic Vai "
    "Vithkuqi Wancho Yezidi Yi ".split()
)


TABLE_NAMES = SPECIAL_TABLES | CATEGORY_ALIASES | SCRIPTS | {_canonical(c) for c in CATEGORIES}


def _known_table(name):
    """parse.go unicodeTable: the canonical name is a category, a special table, a category alias or a
    (one-word) script."""
    return _canonical(name) in TABLE_NAMES
