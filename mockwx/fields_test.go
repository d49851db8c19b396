package mockwx

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFieldTypeOf(t *testing.T) {
	tests := []struct {
		key    string
		want   FieldType
		wantOK bool
	}{
		{"thing1", FieldThing, true},
		{"thing", FieldThing, true},
		{"number12", FieldNumber, true},
		{"letter3", FieldLetter, true},
		{"symbol4", FieldSymbol, true},
		{"character_string4", FieldCharacterString, true},
		{"time2", FieldTime, true},
		{"date5", FieldDate, true},
		{"amount6", FieldAmount, true},
		{"phone_number7", FieldPhoneNumber, true},
		{"car_number8", FieldCarNumber, true},
		{"name9", FieldName, true},
		{"phrase10", FieldPhrase, true},
		{"const11", FieldConst, true},
		{"first", FieldText, false},
		{"remark", FieldText, false},
		{"keyword1", FieldText, false},
		{"text1", FieldText, false},
		{"Thing1", FieldText, false},
		{"thing1a", FieldText, false},
		{"123", FieldText, false},
		{"", FieldText, false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, gotOK := FieldTypeOf(tt.key)
			if got != tt.want || gotOK != tt.wantOK {
				t.Errorf("FieldTypeOf(%q) = %q, %v, want %q, %v", tt.key, got, gotOK, tt.want, tt.wantOK)
			}
		})
	}
}

func TestFieldTypeValid(t *testing.T) {
	for _, ft := range allFieldTypes {
		if !ft.Valid() {
			t.Errorf("FieldType(%q).Valid() = false, want true", ft)
		}
	}
	for _, ft := range []FieldType{"", "Thing", "keyword", "string", "thing1"} {
		if ft.Valid() {
			t.Errorf("FieldType(%q).Valid() = true, want false", ft)
		}
	}
}

// allFieldTypes lists every known type; the fuzz test indexes into it.
var allFieldTypes = []FieldType{
	FieldThing, FieldNumber, FieldLetter, FieldSymbol, FieldCharacterString,
	FieldTime, FieldDate, FieldAmount, FieldPhoneNumber, FieldCarNumber,
	FieldName, FieldPhrase, FieldConst, FieldText,
}

const (
	ok      = ""
	empty   = "is empty"
	invalid = "invalid"
)

type valueCase struct {
	value string
	want  string
}

func TestValidateValue(t *testing.T) {
	tests := []struct {
		field Field
		cases []valueCase
	}{
		{Field{Key: "thing1", Type: FieldThing}, []valueCase{
			{"", empty},
			{"a", ok},
			{" ", ok},
			{"订单已发货", ok},
			{"Order #42 shipped!", ok},
			{strings.Repeat("a", 20), ok},
			{strings.Repeat("a", 21), invalid},
			{strings.Repeat("中", 20), ok}, // 60 bytes, 20 runes
			{strings.Repeat("中", 21), invalid},
			{strings.Repeat("😀", 20), ok},
			{"line1\nline2", invalid},
			{"tab\there", invalid},
			{"\xff", invalid},
			{"ok\xc3", invalid},
		}},
		{Field{Key: "number1", Type: FieldNumber}, []valueCase{
			{"", empty},
			{"0", ok},
			{"123", ok},
			{"-5", ok},
			{"3.14", ok},
			{"-0.5", ok},
			{strings.Repeat("9", 32), ok},
			{strings.Repeat("9", 33), invalid},
			{"-" + strings.Repeat("9", 31), ok},
			{"-" + strings.Repeat("9", 32), invalid},
			{"1.", invalid},
			{".5", invalid},
			{"1.2.3", invalid},
			{"--1", invalid},
			{"+1", invalid},
			{"-", invalid},
			{"1,000", invalid},
			{"12a", invalid},
			{" 1", invalid},
			{"１２", invalid}, // fullwidth digits
			{"١٢", invalid}, // Arabic-Indic digits
		}},
		{Field{Key: "letter1", Type: FieldLetter}, []valueCase{
			{"", empty},
			{"abc", ok},
			{"ABCxyz", ok},
			{strings.Repeat("z", 32), ok},
			{strings.Repeat("z", 33), invalid},
			{"ab1", invalid},
			{"a b", invalid},
			{"é", invalid},
			{"中", invalid},
			{"ａ", invalid}, // fullwidth a
		}},
		{Field{Key: "symbol1", Type: FieldSymbol}, []valueCase{
			{"", empty},
			{"%", ok},
			{"+-*/", ok},
			{"¥$€", ok},
			{"!@#$%", ok},
			{"！？。", ok},
			{"!@#$%^", invalid},
			{"a", invalid},
			{"1", invalid},
			{" ", invalid},
			{"% ", invalid},
			{"中", invalid},
			{"\n", invalid},
		}},
		{Field{Key: "character_string1", Type: FieldCharacterString}, []valueCase{
			{"", empty},
			{"SN-2019-0001", ok},
			{"abc_123!@#", ok},
			{"A B", ok},
			{strings.Repeat("x", 32), ok},
			{strings.Repeat("x", 33), invalid},
			{"订单123", invalid},
			{"é", invalid},
			{"１", invalid},
			{"a\tb", invalid},
			{"a\x7fb", invalid},
		}},
		{Field{Key: "time1", Type: FieldTime}, []valueCase{
			{"", empty},
			{"15:01", ok},
			{"9:05", ok},
			{"00:00", ok},
			{"23:59:59", ok},
			{"15:01:05", ok},
			{"2019年10月1日 15:01", ok},
			{"2019年10月1日15:01", ok},
			{"2019-10-01 15:01", ok},
			{"2019/10/01 15:01:05", ok},
			{"2019-1-1 0:00", ok},
			{"2019年10月1日", ok},
			{"2019-10-01", ok},
			{"2019/10/01", ok},
			{"15:01~16:00", ok},
			{"15:01 ~ 16:00", ok},
			{"15:01～16:00", ok},
			{"2019-10-01 15:01~2019-10-01 16:00", ok},
			{"2019年10月1日~2019年10月7日", ok},
			{"2019-10-01 15:01~16:00", ok},
			{"25:00", invalid},
			{"24:00", invalid},
			{"15:60", invalid},
			{"15:01:60", invalid},
			{"15:1", invalid},
			{"123:00", invalid},
			{"15", invalid},
			{"abc", invalid},
			{"2019-13-01 15:01", invalid},
			{"2019-00-01", invalid},
			{"2019-10-32", invalid},
			{"2019-10-00", invalid},
			{"2019-10/01", invalid},
			{"19-10-01", invalid},
			{"2019-10-01T15:01", invalid},
			{"2019-10-01  15:01", invalid},
			{"2019-10-0115:01", invalid},
			{" 15:01", invalid},
			{"15:01 ", invalid},
			{"15:01~", invalid},
			{"~15:01", invalid},
			{"15:01~16:00~17:00", invalid},
			{"15:01~16:00～17:00", invalid},
			{"２019-10-01", invalid},
		}},
		{Field{Key: "date1", Type: FieldDate}, []valueCase{
			{"", empty},
			{"2019年10月1日", ok},
			{"2019-10-01", ok},
			{"2019/10/01", ok},
			{"2019/1/1", ok},
			{"2019-10-01 15:01", ok},
			{"2019年10月1日 15:01:05", ok},
			{"2019-10-01~2019-10-07", ok},
			{"2019年10月1日 ~ 2019年10月7日", ok},
			{"15:01", invalid},
			{"2019-10-01~15:00", invalid},
			{"2019-13-01", invalid},
			{"2019-12-31", ok},
			{"2019-12-32", invalid},
			{"2019年10月1", invalid},
			{"2019年10月", invalid},
			{"2019-10-01 25:00", invalid},
			{"tomorrow", invalid},
		}},
		{Field{Key: "amount1", Type: FieldAmount}, []valueCase{
			{"", empty},
			{"100", ok},
			{"39.8元", ok},
			{"¥100.00", ok},
			{"￥100.00", ok},
			{"$5", ok},
			{"€0.99", ok},
			{"£12", ok},
			{"100元", ok},
			{strings.Repeat("9", 10), ok},
			{strings.Repeat("9", 11), invalid},
			{"¥" + strings.Repeat("9", 10) + ".99", ok},
			{"¥" + strings.Repeat("9", 11), invalid},
			{"¥", invalid},
			{"元", invalid},
			{"¥100元", invalid},
			{"¥¥100", invalid},
			{"-100", invalid},
			{"1,000", invalid},
			{"100.", invalid},
			{".5", invalid},
			{"100 元", invalid},
			{"100美元", invalid},
			{"abc", invalid},
		}},
		{Field{Key: "phone_number1", Type: FieldPhoneNumber}, []valueCase{
			{"", empty},
			{"13800138000", ok},
			{"+86 138 0013 8000", ok},
			{"(010) 1234-5678", ok},
			{"+86-10-12345678", ok},
			{strings.Repeat("1", 17), ok},
			{strings.Repeat("1", 18), invalid},
			{"+-()", invalid},
			{" ", invalid},
			{"138a0013800", invalid},
			{"138#1", invalid},
			{"电话13800138000", invalid},
		}},
		{Field{Key: "car_number1", Type: FieldCarNumber}, []valueCase{
			{"", empty},
			{"粤A12345", ok},
			{"京B1234学", ok},
			{"粤AD12345", ok},
			{"A12345", ok},
			{"粤a12345", ok},
			{"粤A123456", ok},
			{"粤A1234567", invalid},
			{"粤", invalid},
			{"粤学", invalid},
			{"粤A1学2", invalid},
			{"粤粤A1234", invalid},
			{"粤A 12345", invalid},
			{"粤A-12345", invalid},
		}},
		{Field{Key: "name1", Type: FieldName}, []valueCase{
			{"", empty},
			{"张三", ok},
			{"阿沛·阿旺晋美", ok},
			{strings.Repeat("张", 10), ok},
			{strings.Repeat("张", 11), invalid},
			{"John Smith", ok},
			{"Jean·Paul", ok},
			{strings.Repeat("a", 20), ok},
			{strings.Repeat("a", 21), invalid},
			{"José", ok},
			{"张三 Smith", invalid},
			{"R2D2", invalid},
			{"O'Brien", invalid},
			{"   ", invalid},
			{"·", invalid},
			{"张 三", invalid},
		}},
		{Field{Key: "phrase1", Type: FieldPhrase}, []valueCase{
			{"", empty},
			{"已发货", ok},
			{"中", ok},
			{"五个汉字啊", ok},
			{"六个汉字啊啊", invalid},
			{"ok", invalid},
			{"已发货!", invalid},
			{"已 发货", invalid},
			{"１", invalid},
			{"はい", invalid},
		}},
		{Field{Key: "const1", Type: FieldConst, Values: []string{"已支付", "未支付"}}, []valueCase{
			{"", empty},
			{"已支付", ok},
			{"未支付", ok},
			{"已支付 ", invalid},
			{"支付", invalid},
			{"other", invalid},
		}},
		{Field{Key: "const2", Type: FieldConst}, []valueCase{
			{"", empty},
			{"anything", ok},
			{strings.Repeat("中", 20), ok},
			{strings.Repeat("中", 21), invalid},
			{"\xfe", invalid},
		}},
		{Field{Key: "keyword1", Type: FieldText}, []valueCase{
			{"", empty},
			{"any text\nwith newlines", ok},
			{" ", ok},
			{strings.Repeat("中", 200), ok},
			{strings.Repeat("中", 201), invalid},
			{"bad\x80utf8", invalid},
		}},
		{Field{Key: "unknown1", Type: "no_such_type"}, []valueCase{
			{"", empty},
			{"treated as text", ok},
			{strings.Repeat("x", 200), ok},
			{strings.Repeat("x", 201), invalid},
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.field.Type), func(t *testing.T) {
			for _, c := range tt.cases {
				got := tt.field.ValidateValue(c.value)
				if got != c.want {
					t.Errorf("Field{Key: %q, Type: %q}.ValidateValue(%q) = %q, want %q",
						tt.field.Key, tt.field.Type, c.value, got, c.want)
				}
			}
		})
	}
}

func TestValidateData(t *testing.T) {
	fields := []Field{
		{Key: "thing1", Type: FieldThing},
		{Key: "time2", Type: FieldTime},
		{Key: "phrase3", Type: FieldPhrase},
	}
	valid := func() map[string]string {
		return map[string]string{
			"thing1":  "订单已发货",
			"time2":   "2019-10-01 15:01",
			"phrase3": "已发货",
		}
	}
	tests := []struct {
		name   string
		fields []Field
		edit   func(map[string]string) // nil: pass a nil map
		want   string
	}{
		{"all valid", fields, func(map[string]string) {}, ""},
		{"extra keys ignored", fields, func(d map[string]string) {
			d["first"] = "你好"
			d["remark"] = strings.Repeat("x", 500)
			d["keyword1"] = ""
		}, ""},
		{"first field invalid", fields, func(d map[string]string) {
			d["thing1"] = strings.Repeat("a", 21)
		}, "data.thing1.value invalid"},
		{"last field invalid", fields, func(d map[string]string) {
			d["phrase3"] = "ok"
		}, "data.phrase3.value invalid"},
		{"first violation in field order wins", fields, func(d map[string]string) {
			d["phrase3"] = "ok"
			d["time2"] = "25:00"
		}, "data.time2.value invalid"},
		{"empty before invalid in field order", fields, func(d map[string]string) {
			d["thing1"] = ""
			d["time2"] = "25:00"
		}, "data.thing1.value is empty"},
		{"invalid before missing in field order", fields, func(d map[string]string) {
			d["thing1"] = "\n"
			delete(d, "time2")
		}, "data.thing1.value invalid"},
		{"missing key", fields, func(d map[string]string) {
			delete(d, "time2")
		}, "data.time2.value is empty"},
		{"empty value", fields, func(d map[string]string) {
			d["phrase3"] = ""
		}, "data.phrase3.value is empty"},
		{"no fields", nil, func(d map[string]string) {
			d["thing1"] = ""
		}, ""},
		{"nil data", fields, nil, "data.thing1.value is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var data map[string]string
			if tt.edit != nil {
				data = valid()
				tt.edit(data)
			}
			got := ValidateData(tt.fields, data)
			if got != tt.want {
				t.Errorf("ValidateData(%v, %q) = %q, want %q", tt.fields, data, got, tt.want)
			}
		})
	}
}

// fuzzField maps a fuzzed index to a field: every known type, const with and
// without values, and an unknown type.
func fuzzField(i uint8) Field {
	n := len(allFieldTypes)
	switch j := int(i) % (n + 2); {
	case j < n:
		return Field{Key: "k1", Type: allFieldTypes[j]}
	case j == n:
		return Field{Key: "const1", Type: FieldConst, Values: []string{"是", "否", "maybe"}}
	default:
		return Field{Key: "x1", Type: "unknown"}
	}
}

func FuzzValidateValue(f *testing.F) {
	seeds := []string{"", "a", "15:01", "2019年10月1日 15:01~16:00", "¥100.00", "粤A12345", "张三", "已发货", "\xff", "是"}
	for i := range len(allFieldTypes) + 2 {
		for _, s := range seeds {
			f.Add(uint8(i), s)
		}
	}
	f.Fuzz(func(t *testing.T, typeIndex uint8, value string) {
		field := fuzzField(typeIndex)
		got := field.ValidateValue(value)
		switch got {
		case "", "is empty", "invalid":
		default:
			t.Fatalf("Field{Type: %q}.ValidateValue(%q) = %q, want \"\", \"is empty\" or \"invalid\"", field.Type, value, got)
		}
		if (value == "") != (got == "is empty") {
			t.Errorf("Field{Type: %q}.ValidateValue(%q) = %q, want \"is empty\" exactly for the empty value", field.Type, value, got)
		}
		if value != "" && !utf8.ValidString(value) && got != "invalid" {
			t.Errorf("Field{Type: %q}.ValidateValue(%q) = %q, want \"invalid\" for invalid UTF-8", field.Type, value, got)
		}
		if got == "" && field.Type != FieldAmount && utf8.RuneCountInString(value) > 200 {
			t.Errorf("Field{Type: %q}.ValidateValue(%q) = \"\", want \"invalid\" for more than 200 runes", field.Type, value)
		}
		// ValidateData must agree with ValidateValue for a single field.
		wantData := ""
		if got != "" {
			wantData = "data." + field.Key + ".value " + got
		}
		if gotData := ValidateData([]Field{field}, map[string]string{field.Key: value}); gotData != wantData {
			t.Errorf("ValidateData(%q: %q) = %q, want %q", field.Key, value, gotData, wantData)
		}
	})
}
