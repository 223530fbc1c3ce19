package deputy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSecret_Redacted(t *testing.T) {
	t.Parallel()
	const raw = "essu_very_secret_value"
	s := Secret(raw)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", slog.Any("secret", s), "plain", s)
	j, _ := json.Marshal(map[string]any{"s": s})
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %s %q %#v %x", s, s, s, s, s), string(j), buf.String(),
		fmt.Sprintf("%+v", Caller{Authorization: s}),
	}
	for _, out := range outs {
		if strings.Contains(out, raw) || strings.Contains(out, "very_secret") {
			t.Fatalf("secret leaked: %s", out)
		}
	}
	if s.Reveal() != raw {
		t.Fatalf("Reveal = %q", s.Reveal())
	}
}

func TestUserScope_JSON(t *testing.T) {
	t.Parallel()
	us := UserScope{KeyIDs: map[string]string{"es": "k1", "uiam": "k2"}, SpaceID: "s", UserName: "elastic"}
	b, err := json.Marshal(us)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if m["api_key_id"] != "k1" || m["uiam_api_key_id"] != "k2" || m["space_id"] != "s" ||
		m["user_name"] != "elastic" || m["api_key_created_by_user"] != false {
		t.Fatalf("user_scope JSON = %s", b)
	}
	var back UserScope
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.KeyIDs["es"] != "k1" || back.KeyIDs["uiam"] != "k2" || back.UserName != "elastic" {
		t.Fatalf("round trip = %+v", back)
	}
}

func TestRequest_Client(t *testing.T) {
	t.Parallel()
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	h := http.Header{"Authorization": {"ApiKey c2VjcmV0"}}

	allowed := NewRequest("default", "es", "id1", "u", h, func(string) bool { return true })
	denied := NewRequest("default", "es", "id1", "u", h, func(string) bool { return false })
	for _, r := range []*Request{allowed, denied} {
		resp, err := r.Client(nil).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if len(got) != 2 || got[0] != "ApiKey c2VjcmV0" || got[1] != "" {
		t.Fatalf("headers presented = %q; want the key to the allowed host only", got)
	}
	if strings.Contains(fmt.Sprint(allowed), "c2VjcmV0") {
		t.Fatalf("request formatting leaks the key: %v", allowed)
	}
}
