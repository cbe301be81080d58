package topic

import "testing"

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		topic, err string
	}{
		{"tesla", ""},
		{"home/cars/tesla", ""},
		{"", `k: must be set: use one or more topic levels without wildcards, such as "tesla"`},
		{"tesla/#", `k: "tesla/#" holds an MQTT wildcard (+ or #): use one or more topic levels without wildcards, such as "tesla"`},
		{"a/+/b", `k: "a/+/b" holds an MQTT wildcard (+ or #): use one or more topic levels without wildcards, such as "tesla"`},
		{"/tesla", `k: "/tesla" starts or ends with '/': use one or more topic levels without wildcards, such as "tesla"`},
		{"tesla/", `k: "tesla/" starts or ends with '/': use one or more topic levels without wildcards, such as "tesla"`},
		{"$SYS", `k: "$SYS" starts with '$', which brokers reserve for themselves: use one or more topic levels without wildcards, such as "tesla"`},
		{"a//b", `k: "a//b" has an empty topic level: use one or more topic levels without wildcards, such as "tesla"`},
		{"a\x00b", `k: "a\x00b" is not valid UTF-8 text without NUL: use one or more topic levels without wildcards, such as "tesla"`},
		{"a\xffb", `k: "a\xffb" is not valid UTF-8 text without NUL: use one or more topic levels without wildcards, such as "tesla"`},
	} {
		err := Check("k", tc.topic, "tesla")
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.err {
			t.Errorf("Check(%q) = %q, want %q", tc.topic, got, tc.err)
		}
	}
}
