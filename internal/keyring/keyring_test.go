package keyring_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/deputyhq/deputy/internal/keyring"
)

// mustKey returns a random key.
func mustKey(tb testing.TB) []byte {
	tb.Helper()
	k := make([]byte, keyring.KeySize)
	if _, err := rand.Read(k); err != nil {
		tb.Fatalf("rand: %v", err)
	}
	return k
}

// mustNew returns a keyring or fails the test.
func mustNew(tb testing.TB, active []byte, decryptOnly ...[]byte) *keyring.Keyring {
	tb.Helper()
	kr, err := keyring.New(active, decryptOnly...)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return kr
}

func TestParseKey(t *testing.T) {
	t.Parallel()

	raw := mustKey(t)
	passphrase := strings.Repeat("correct horse battery staple ", 2)

	t.Run("Hex", func(t *testing.T) {
		t.Parallel()
		k, err := keyring.ParseKey(hex.EncodeToString(raw))
		if err != nil || !bytes.Equal(k, raw) {
			t.Fatalf("ParseKey(hex) = %x, %v; want %x", k, err, raw)
		}
	})
	t.Run("Base64", func(t *testing.T) {
		t.Parallel()
		k, err := keyring.ParseKey(" " + base64.StdEncoding.EncodeToString(raw) + "\n")
		if err != nil || !bytes.Equal(k, raw) {
			t.Fatalf("ParseKey(base64) = %x, %v; want %x", k, err, raw)
		}
	})
	t.Run("Passphrase", func(t *testing.T) {
		t.Parallel()
		k1, err := keyring.ParseKey(passphrase)
		if err != nil {
			t.Fatalf("ParseKey: %v", err)
		}
		k2, _ := keyring.ParseKey(passphrase)
		if len(k1) != keyring.KeySize || !bytes.Equal(k1, k2) {
			t.Fatalf("derived keys %x and %x; want equal %d-byte keys", k1, k2, keyring.KeySize)
		}
		other, _ := keyring.ParseKey(passphrase + "!")
		if bytes.Equal(k1, other) {
			t.Fatalf("different passphrases derived the same key")
		}
	})
	t.Run("ErrTooShort", func(t *testing.T) {
		t.Parallel()
		short := "hunter2-hunter2-hunter2"
		_, err := keyring.ParseKey(short)
		if err == nil {
			t.Fatalf("ParseKey(short) succeeded")
		}
		if strings.Contains(err.Error(), short) {
			t.Fatalf("error %q contains the key", err)
		}
	})
}

func TestNew(t *testing.T) {
	t.Parallel()

	t.Run("ErrKeySize", func(t *testing.T) {
		t.Parallel()
		short := []byte("0123456789abcdef")
		_, err := keyring.New(short)
		if err == nil {
			t.Fatalf("New(16 bytes) succeeded")
		}
		if msg := err.Error(); strings.Contains(msg, string(short)) ||
			strings.Contains(msg, hex.EncodeToString(short)) {
			t.Fatalf("error %q contains the key", msg)
		}
		if _, err := keyring.New(mustKey(t), short); err == nil {
			t.Fatalf("New with a 16-byte decrypt-only key succeeded")
		}
	})
	t.Run("ActiveAlsoDecryptOnly", func(t *testing.T) {
		t.Parallel()
		k := mustKey(t)
		if _, err := keyring.New(k, k); err != nil {
			t.Fatalf("New(k, k): %v", err)
		}
	})
}

func TestKeyring_Seal(t *testing.T) {
	t.Parallel()

	kr := mustNew(t, mustKey(t))
	plaintext := []byte("essu_dGhpcyBpcyBhIHRlc3Qgc2VjcmV0")
	aad := []byte("task_keys/42/secret")

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		ct, err := kr.Seal(plaintext, aad)
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		if bytes.Contains(ct, plaintext) {
			t.Fatalf("ciphertext contains the plaintext")
		}
		if want := 1 + 4 + 12 + len(plaintext) + 16; len(ct) != want {
			t.Fatalf("len(ciphertext) = %d; want %d", len(ct), want)
		}
		if ct[0] != 1 {
			t.Fatalf("version byte = %d; want 1", ct[0])
		}
		got, err := kr.Open(ct, aad)
		if err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("Open = %q, %v; want %q", got, err, plaintext)
		}
	})
	t.Run("EmptyPlaintext", func(t *testing.T) {
		t.Parallel()
		ct, err := kr.Seal(nil, nil)
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		got, err := kr.Open(ct, nil)
		if err != nil || len(got) != 0 {
			t.Fatalf("Open = %q, %v; want empty", got, err)
		}
	})
	t.Run("RandomNonce", func(t *testing.T) {
		t.Parallel()
		a, _ := kr.Seal(plaintext, aad)
		b, _ := kr.Seal(plaintext, aad)
		if bytes.Equal(a, b) {
			t.Fatalf("two seals of the same plaintext are equal")
		}
	})
	t.Run("ErrWrongAAD", func(t *testing.T) {
		t.Parallel()
		ct, _ := kr.Seal(plaintext, aad)
		_, err := kr.Open(ct, []byte("task_keys/43/secret"))
		if !errors.Is(err, keyring.ErrDecrypt) {
			t.Fatalf("Open with other aad: err = %v; want ErrDecrypt", err)
		}
	})
	t.Run("ErrTampered", func(t *testing.T) {
		t.Parallel()
		ct, _ := kr.Seal(plaintext, aad)
		// Flip one bit in the nonce, the sealed data and the tag in turn.
		for _, i := range []int{5, 17, len(ct) - 1} {
			bad := bytes.Clone(ct)
			bad[i] ^= 1
			if _, err := kr.Open(bad, aad); !errors.Is(err, keyring.ErrDecrypt) {
				t.Fatalf("Open with byte %d flipped: err = %v; want ErrDecrypt", i, err)
			}
		}
	})
	t.Run("ErrMalformed", func(t *testing.T) {
		t.Parallel()
		ct, _ := kr.Seal(plaintext, aad)
		if _, err := kr.Open(ct[:20], aad); !errors.Is(err, keyring.ErrMalformed) {
			t.Fatalf("Open(truncated): err = %v; want ErrMalformed", err)
		}
		bad := bytes.Clone(ct)
		bad[0] = 2
		if _, err := kr.Open(bad, aad); !errors.Is(err, keyring.ErrMalformed) {
			t.Fatalf("Open(version 2): err = %v; want ErrMalformed", err)
		}
	})
	t.Run("ErrUnknownKey", func(t *testing.T) {
		t.Parallel()
		key := mustKey(t)
		ct, _ := mustNew(t, key).Seal(plaintext, aad)
		_, err := kr.Open(ct, aad)
		if !errors.Is(err, keyring.ErrUnknownKey) {
			t.Fatalf("Open under another key: err = %v; want ErrUnknownKey", err)
		}
		if msg := err.Error(); strings.Contains(msg, hex.EncodeToString(key)) ||
			strings.Contains(msg, string(plaintext)) {
			t.Fatalf("error %q leaks the key or plaintext", msg)
		}
	})
}

func TestKeyring_Rotation(t *testing.T) {
	t.Parallel()

	oldKey, newKey := mustKey(t), mustKey(t)
	old := mustNew(t, oldKey)
	rotated := mustNew(t, newKey, oldKey)
	aad := []byte("aad")

	oldCT, _ := old.Seal([]byte("old secret"), aad)
	got, err := rotated.Open(oldCT, aad)
	if err != nil || string(got) != "old secret" {
		t.Fatalf("Open(old ciphertext) = %q, %v; want old secret", got, err)
	}
	if rotated.IsActive(oldCT) {
		t.Fatalf("IsActive(old ciphertext) = true")
	}

	// New ciphertexts use the new key: the old keyring cannot open them.
	newCT, _ := rotated.Seal([]byte("new secret"), aad)
	if !rotated.IsActive(newCT) {
		t.Fatalf("IsActive(new ciphertext) = false")
	}
	if _, err := old.Open(newCT, aad); !errors.Is(err, keyring.ErrUnknownKey) {
		t.Fatalf("old keyring Open(new ciphertext): err = %v; want ErrUnknownKey", err)
	}
}

// TestKeyring_Bulk seals and opens 1,000 secrets with a passphrase key,
// which is derived once: it must not cost a slow KDF per call.
func TestKeyring_Bulk(t *testing.T) {
	t.Parallel()

	key, err := keyring.ParseKey(strings.Repeat("p", 40))
	if err != nil {
		t.Fatalf("ParseKey: %v", err)
	}
	kr := mustNew(t, key)
	secret := []byte("dGhpcyBpcyBub3QgYSByZWFsIGtleTpzZWNyZXQ=")
	for i := range 1000 {
		aad := []byte{byte(i), byte(i >> 8)}
		ct, err := kr.Seal(secret, aad)
		if err != nil {
			t.Fatalf("Seal %d: %v", i, err)
		}
		if _, err := kr.Open(ct, aad); err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
	}
}

func BenchmarkSeal(b *testing.B) {
	kr := mustNew(b, mustKey(b))
	secret := []byte("dGhpcyBpcyBub3QgYSByZWFsIGtleTpzZWNyZXQ=")
	aad := []byte("task_keys/es/0123456789abcdefghij")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Seal(secret, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	kr := mustNew(b, mustKey(b))
	aad := []byte("task_keys/es/0123456789abcdefghij")
	ct, err := kr.Seal([]byte("dGhpcyBpcyBub3QgYSByZWFsIGtleTpzZWNyZXQ="), aad)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Open(ct, aad); err != nil {
			b.Fatal(err)
		}
	}
}
