package mockwx

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// FieldType is the type of a template data field, e.g. "thing", "time".
//
// The names are the key prefixes WeChat uses in category templates
// (类目模板): a key "thing1" holds a value of type FieldThing.
type FieldType string

// The field types of category templates, plus FieldText for the untyped
// fields of legacy templates.
const (
	// FieldThing is a short description: up to 20 characters.
	FieldThing FieldType = "thing"
	// FieldNumber is a decimal number: up to 32 characters.
	FieldNumber FieldType = "number"
	// FieldLetter is up to 32 ASCII letters.
	FieldLetter FieldType = "letter"
	// FieldSymbol is up to 5 punctuation or symbol characters.
	FieldSymbol FieldType = "symbol"
	// FieldCharacterString is up to 32 ASCII letters, digits and symbols.
	FieldCharacterString FieldType = "character_string"
	// FieldTime is a 24-hour time, date-time or date, or a range of them.
	FieldTime FieldType = "time"
	// FieldDate is a date, optionally followed by a time, or a range of them.
	FieldDate FieldType = "date"
	// FieldAmount is an amount of money, e.g. "¥100.00" or "39.8元".
	FieldAmount FieldType = "amount"
	// FieldPhoneNumber is up to 17 digits and phone symbols.
	FieldPhoneNumber FieldType = "phone_number"
	// FieldCarNumber is a licence plate such as "粤A12345".
	FieldCarNumber FieldType = "car_number"
	// FieldName is a person's name: up to 10 Chinese or 20 Latin characters.
	FieldName FieldType = "name"
	// FieldPhrase is up to 5 Chinese characters.
	FieldPhrase FieldType = "phrase"
	// FieldConst is one of a fixed set of values chosen in the template.
	FieldConst FieldType = "const"
	// FieldText is free text for legacy templates: any non-empty value up to
	// 200 runes.
	FieldText FieldType = "text"
)

// Problem words that WeChat puts after "data.KEY.value " in an errmsg.
const (
	problemEmpty   = "is empty"
	problemInvalid = "invalid"
)

// Length limits, in runes.
const (
	maxThing           = 20
	maxNumber          = 32
	maxLetter          = 32
	maxSymbol          = 5
	maxCharacterString = 32
	maxAmountInteger   = 10
	maxPhoneNumber     = 17
	maxCarNumber       = 8
	maxNameChinese     = 10
	maxNameLatin       = 20
	maxPhrase          = 5
	maxConst           = 20
	maxText            = 200
)

// categoryTypes are the types that FieldTypeOf can infer from a key prefix.
var categoryTypes = map[FieldType]bool{
	FieldThing:           true,
	FieldNumber:          true,
	FieldLetter:          true,
	FieldSymbol:          true,
	FieldCharacterString: true,
	FieldTime:            true,
	FieldDate:            true,
	FieldAmount:          true,
	FieldPhoneNumber:     true,
	FieldCarNumber:       true,
	FieldName:            true,
	FieldPhrase:          true,
	FieldConst:           true,
}

// Field is one typed placeholder of a template, {{key.DATA}}.
type Field struct {
	Key    string    `json:"key" yaml:"key"`
	Type   FieldType `json:"type" yaml:"type"`
	Values []string  `json:"values,omitempty" yaml:"values,omitempty"` // allowed values for const
}

// FieldTypeOf infers the type from a category-template key such as
// "thing1", "time2" or "character_string4": trailing ASCII digits are
// stripped and the rest must name a category type (case-sensitive). For any
// other key, such as the legacy "first", "keyword1" or "remark", it returns
// FieldText and ok=false. FieldText is not a category type, so "text1" also
// gives ok=false.
func FieldTypeOf(key string) (FieldType, bool) {
	prefix := strings.TrimRight(key, "0123456789")
	t := FieldType(prefix)
	if categoryTypes[t] {
		return t, true
	}
	return FieldText, false
}

// Valid reports whether t is a known FieldType.
func (t FieldType) Valid() bool {
	return t == FieldText || categoryTypes[t]
}

// ValidateValue checks one value against the field's type. It returns "" when
// valid, or the problem word WeChat puts in the errmsg: "is empty" or
// "invalid" (e.g. errmsg "argument invalid! data.phrase4.value invalid").
//
// The value is not trimmed. An empty value is "is empty" and invalid UTF-8 is
// "invalid" whatever the type. A field whose Type is not Valid is checked as
// FieldText.
func (f Field) ValidateValue(value string) string {
	if value == "" {
		return problemEmpty
	}
	if !utf8.ValidString(value) {
		return problemInvalid
	}
	var ok bool
	switch f.Type {
	case FieldThing:
		ok = validThing(value)
	case FieldNumber:
		ok = validNumber(value)
	case FieldLetter:
		ok = validLetter(value)
	case FieldSymbol:
		ok = validSymbol(value)
	case FieldCharacterString:
		ok = validCharacterString(value)
	case FieldTime:
		ok = validRange(value, validTimePoint)
	case FieldDate:
		ok = validRange(value, validDatePoint)
	case FieldAmount:
		ok = validAmount(value)
	case FieldPhoneNumber:
		ok = validPhoneNumber(value)
	case FieldCarNumber:
		ok = validCarNumber(value)
	case FieldName:
		ok = validName(value)
	case FieldPhrase:
		ok = validPhrase(value)
	case FieldConst:
		ok = f.validConst(value)
	default: // FieldText and unknown types
		ok = utf8.RuneCountInString(value) <= maxText
	}
	if !ok {
		return problemInvalid
	}
	return ""
}

// ValidateData checks a whole data map against the template's fields: every
// field's key must be present with a non-empty value (missing or empty ->
// "data.KEY.value is empty"); extra keys that are not fields are ignored
// (WeChat ignores them, e.g. legacy "first"/"remark"). It returns "" or the
// errmsg fragment for the FIRST violation in the order of fields, e.g.
// "data.thing1.value invalid".
func ValidateData(fields []Field, data map[string]string) string {
	for _, f := range fields {
		// A missing key reads as "", which ValidateValue reports as empty.
		if p := f.ValidateValue(data[f.Key]); p != "" {
			return "data." + f.Key + ".value " + p
		}
	}
	return ""
}

// runeLen reports whether s has between 1 and max runes.
func runeLen(s string, max int) bool {
	n := utf8.RuneCountInString(s)
	return n >= 1 && n <= max
}

// all reports whether every rune of s satisfies ok.
func all(s string, ok func(rune) bool) bool {
	for _, r := range s {
		if !ok(r) {
			return false
		}
	}
	return true
}

func isASCIIDigit(r rune) bool  { return '0' <= r && r <= '9' }
func isASCIILetter(r rune) bool { return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' }
func isHan(r rune) bool         { return unicode.Is(unicode.Han, r) }

// validThing accepts up to 20 characters of any kind except control
// characters (so no newlines or tabs).
func validThing(s string) bool {
	return runeLen(s, maxThing) && all(s, func(r rune) bool { return !unicode.IsControl(r) })
}

// validNumber accepts an optional "-", one or more ASCII digits, and an
// optional "." followed by one or more digits: "-1.5" but not "1." or ".5".
func validNumber(s string) bool {
	if !runeLen(s, maxNumber) {
		return false
	}
	s = strings.TrimPrefix(s, "-")
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || !all(intPart, isASCIIDigit) {
		return false
	}
	return !hasDot || frac != "" && all(frac, isASCIIDigit)
}

func validLetter(s string) bool {
	return runeLen(s, maxLetter) && all(s, isASCIILetter)
}

// validSymbol accepts up to 5 runes from the Unicode punctuation (P) and
// symbol (S) categories, which excludes letters, digits, spaces and controls.
func validSymbol(s string) bool {
	return runeLen(s, maxSymbol) && all(s, func(r rune) bool {
		return unicode.IsPunct(r) || unicode.IsSymbol(r)
	})
}

// validCharacterString accepts up to 32 printable ASCII characters
// (0x20-0x7E, so the space is allowed but controls and non-ASCII are not).
func validCharacterString(s string) bool {
	return runeLen(s, maxCharacterString) && all(s, func(r rune) bool { return 0x20 <= r && r <= 0x7E })
}

// validAmount accepts an optional leading currency symbol (Unicode category
// Sc: ¥ ￥ $ € £ ...), 1 to 10 ASCII digits, an optional "." with one or more
// digits, and an optional trailing "元". A currency symbol and "元" together,
// signs, and thousands separators are rejected.
func validAmount(s string) bool {
	hasSymbol := false
	if r, size := utf8.DecodeRuneInString(s); unicode.Is(unicode.Sc, r) {
		s = s[size:]
		hasSymbol = true
	}
	if rest, ok := strings.CutSuffix(s, "元"); ok {
		if hasSymbol {
			return false
		}
		s = rest
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if len(intPart) < 1 || len(intPart) > maxAmountInteger || !all(intPart, isASCIIDigit) {
		return false
	}
	return !hasDot || frac != "" && all(frac, isASCIIDigit)
}

// validPhoneNumber accepts up to 17 characters made of ASCII digits and the
// symbols "+", "-", " ", "(" and ")", with at least one digit.
func validPhoneNumber(s string) bool {
	if !runeLen(s, maxPhoneNumber) || !strings.ContainsFunc(s, isASCIIDigit) {
		return false
	}
	return all(s, func(r rune) bool {
		return isASCIIDigit(r) || strings.ContainsRune("+- ()", r)
	})
}

// validCarNumber accepts up to 8 characters where the first and the last may
// be Chinese (Han) and all others are ASCII letters or digits; at least one
// ASCII letter or digit is required.
func validCarNumber(s string) bool {
	rs := []rune(s)
	if len(rs) < 1 || len(rs) > maxCarNumber {
		return false
	}
	alnum := 0
	for i, r := range rs {
		switch {
		case isASCIILetter(r) || isASCIIDigit(r):
			alnum++
		case isHan(r) && (i == 0 || i == len(rs)-1):
		default:
			return false
		}
	}
	return alnum > 0
}

// validName accepts either a Chinese name (Han characters and the middle
// dot "·", up to 10 runes, at least one Han) or a Latin-script name (letters
// other than Han, spaces and "·", up to 20 runes, at least one letter). The
// two forms cannot be mixed.
func validName(s string) bool {
	if strings.ContainsFunc(s, isHan) {
		return runeLen(s, maxNameChinese) && all(s, func(r rune) bool { return isHan(r) || r == '·' })
	}
	return runeLen(s, maxNameLatin) && strings.ContainsFunc(s, unicode.IsLetter) &&
		all(s, func(r rune) bool { return unicode.IsLetter(r) || r == ' ' || r == '·' })
}

func validPhrase(s string) bool {
	return runeLen(s, maxPhrase) && all(s, isHan)
}

// validConst accepts exactly one of f.Values or, when there are none, any
// value of up to 20 runes.
func (f Field) validConst(s string) bool {
	if len(f.Values) == 0 {
		return runeLen(s, maxConst)
	}
	for _, v := range f.Values {
		if s == v {
			return true
		}
	}
	return false
}

// validRange accepts either one point or a range "A~B" of two points (the
// fullwidth "～" works too), optionally with spaces around the tilde.
func validRange(s string, point func(string) bool) bool {
	sep := "~"
	if !strings.Contains(s, sep) {
		sep = "～"
	}
	a, b, isRange := strings.Cut(s, sep)
	if !isRange {
		return point(s)
	}
	return point(strings.TrimRight(a, " ")) && point(strings.TrimLeft(b, " "))
}

// validTimePoint accepts a clock time ("15:01", "15:01:05"), a date
// ("2019-10-01", "2019/10/01", "2019年10月1日"), or a date followed by a
// clock time.
func validTimePoint(s string) bool {
	if rest, ok := parseClock(s); ok && rest == "" {
		return true
	}
	return validDatePoint(s)
}

// validDatePoint accepts a date optionally followed by a clock time,
// separated by one space (or by nothing after "日").
func validDatePoint(s string) bool {
	rest, ok := parseDate(s)
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	if r, ok := strings.CutPrefix(rest, " "); ok {
		rest = r
	} else if !strings.HasSuffix(s[:len(s)-len(rest)], "日") {
		return false
	}
	rest, ok = parseClock(rest)
	return ok && rest == ""
}

// parseDate reads a date at the start of s: a 4-digit year followed by
// "年M月D日", "-M-D" or "/M/D", where month and day have 1 or 2 digits,
// month is 1-12 and day is 1-31. It returns the rest of s.
func parseDate(s string) (string, bool) {
	if _, s, ok := parseDigits(s, 4, 4, 0, 9999); !ok {
		return "", false
	} else if rest, ok := strings.CutPrefix(s, "年"); ok {
		return parseMonthDay(rest, "月", "日")
	} else if rest, ok := strings.CutPrefix(s, "-"); ok {
		return parseMonthDay(rest, "-", "")
	} else if rest, ok := strings.CutPrefix(s, "/"); ok {
		return parseMonthDay(rest, "/", "")
	}
	return "", false
}

// parseMonthDay reads month, afterMonth, day and afterDay at the start of s.
func parseMonthDay(s, afterMonth, afterDay string) (string, bool) {
	_, s, ok := parseDigits(s, 1, 2, 1, 12)
	if !ok {
		return "", false
	}
	if s, ok = strings.CutPrefix(s, afterMonth); !ok {
		return "", false
	}
	if _, s, ok = parseDigits(s, 1, 2, 1, 31); !ok {
		return "", false
	}
	return strings.CutPrefix(s, afterDay)
}

// parseClock reads a 24-hour time "H:MM" or "H:MM:SS" at the start of s: the
// hour has 1 or 2 digits (0-23), minutes and seconds exactly 2 (00-59). It
// returns the rest of s.
func parseClock(s string) (string, bool) {
	_, s, ok := parseDigits(s, 1, 2, 0, 23)
	if !ok {
		return "", false
	}
	if s, ok = strings.CutPrefix(s, ":"); !ok {
		return "", false
	}
	if _, s, ok = parseDigits(s, 2, 2, 0, 59); !ok {
		return "", false
	}
	if rest, ok := strings.CutPrefix(s, ":"); ok {
		_, s, ok = parseDigits(rest, 2, 2, 0, 59)
		return s, ok
	}
	return s, true
}

// parseDigits reads between minDigits and maxDigits ASCII digits (as many as
// there are, up to maxDigits) at the start of s and checks that their value
// is in [lo, hi]. It returns the value and the rest of s.
func parseDigits(s string, minDigits, maxDigits, lo, hi int) (int, string, bool) {
	n, v := 0, 0
	for n < len(s) && n < maxDigits && isASCIIDigit(rune(s[n])) {
		v = v*10 + int(s[n]-'0')
		n++
	}
	if n < minDigits || v < lo || v > hi {
		return 0, s, false
	}
	return v, s[n:], true
}
