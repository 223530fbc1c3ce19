// Package keyring encrypts secrets at rest with AES-256-GCM under one active
// key and any number of decrypt-only keys, so that keys can be rotated
// without re-encrypting everything at once.
//
// A ciphertext is laid out as
//
//	version (1 byte) | key id (4 bytes) | nonce (12 bytes) | sealed data
//
// where the key id is the first 4 bytes of the SHA-256 of the key and the
// sealed data carries GCM's 16-byte tag. The version byte and key id are
// authenticated together with the caller's additional data, which should
// name the immutable context the secret belongs to (table, row id, field),
// so that a ciphertext cannot be moved to another row.
//
// Errors never contain key material or plaintext.
package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

const (
	// KeySize is the size of a key in bytes.
	KeySize = 32
	// MinPassphrase is the minimum length of a passphrase accepted by
	// [ParseKey].
	MinPassphrase = 32

	version   byte = 1
	idSize         = 4
	nonceSize      = 12
	prefixLen      = 1 + idSize // authenticated with the caller's aad
	headerLen      = prefixLen + nonceSize
	tagSize        = 16
)

// hkdfSalt and hkdfInfo bind passphrase-derived keys to this use.
var hkdfSalt = []byte("deputy keyring")

const hkdfInfo = "deputy keyring v1 aes-256-gcm"

var (
	// ErrMalformed is returned by [Keyring.Open] for a ciphertext that is
	// too short or has an unknown version.
	ErrMalformed = errors.New("keyring: malformed ciphertext")
	// ErrUnknownKey is returned by [Keyring.Open] for a ciphertext sealed
	// under a key the keyring does not hold.
	ErrUnknownKey = errors.New("keyring: unknown key id")
	// ErrDecrypt is returned by [Keyring.Open] when authentication fails:
	// the ciphertext was altered, or the additional data differs.
	ErrDecrypt = errors.New("keyring: message authentication failed")
)

// ParseKey parses a configured key. It accepts, in this order, 64 hex
// characters, the standard base64 encoding of 32 bytes, or a passphrase of
// at least [MinPassphrase] characters, from which a key is derived once with
// HKDF-SHA256. HKDF does not slow down guessing, so a passphrase must be as
// random as a key; generate one rather than choosing it. Surrounding white
// space is ignored.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	if k, err := base64.StdEncoding.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	if len(s) < MinPassphrase {
		return nil, fmt.Errorf("keyring: parse key: want 64 hex characters, base64 of %d bytes "+
			"or a passphrase of at least %d characters", KeySize, MinPassphrase)
	}
	k, err := hkdf.Key(sha256.New, []byte(s), hkdfSalt, hkdfInfo, KeySize)
	if err != nil {
		return nil, fmt.Errorf("keyring: derive key: %w", err)
	}
	return k, nil
}

// Keyring seals with its active key and opens with any of its keys. It is
// safe for concurrent use.
type Keyring struct {
	activeID [idSize]byte
	active   cipher.AEAD
	keys     map[[idSize]byte]cipher.AEAD
}

// New returns a keyring that seals with active and opens ciphertexts sealed
// under active or any of decryptOnly. Every key must be [KeySize] bytes.
func New(active []byte, decryptOnly ...[]byte) (*Keyring, error) {
	kr := &Keyring{keys: make(map[[idSize]byte]cipher.AEAD, 1+len(decryptOnly))}
	aead, id, err := newAEAD(active)
	if err != nil {
		return nil, fmt.Errorf("keyring: active key: %w", err)
	}
	kr.active, kr.activeID, kr.keys[id] = aead, id, aead

	for i, k := range decryptOnly {
		if bytes.Equal(k, active) {
			continue
		}
		aead, id, err := newAEAD(k)
		if err != nil {
			return nil, fmt.Errorf("keyring: decrypt-only key %d: %w", i, err)
		}
		if _, dup := kr.keys[id]; dup {
			// NB: two distinct keys whose ids collide cannot be told apart
			// when opening; one of them has to be replaced.
			return nil, fmt.Errorf("keyring: decrypt-only key %d: key id %x is taken", i, id)
		}
		kr.keys[id] = aead
	}
	return kr, nil
}

// newAEAD returns the AES-256-GCM cipher for key and the key's id.
func newAEAD(key []byte) (cipher.AEAD, [idSize]byte, error) {
	var id [idSize]byte
	if len(key) != KeySize {
		return nil, id, fmt.Errorf("want %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, id, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, id, err
	}
	sum := sha256.Sum256(key)
	copy(id[:], sum[:idSize])
	return aead, id, nil
}

// IsActive reports whether ciphertext names the active key. A rotation job
// re-seals the ciphertexts for which it is false.
func (kr *Keyring) IsActive(ciphertext []byte) bool {
	return len(ciphertext) >= prefixLen && bytes.Equal(ciphertext[1:prefixLen], kr.activeID[:])
}

// Seal encrypts plaintext under the active key with a random nonce,
// authenticating aad with it. Open must be given the same aad.
func (kr *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, headerLen, headerLen+len(plaintext)+tagSize)
	out[0] = version
	copy(out[1:prefixLen], kr.activeID[:])
	nonce := out[prefixLen:headerLen]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("keyring: seal: nonce: %w", err)
	}
	return kr.active.Seal(out, nonce, plaintext, additionalData(out[:prefixLen], aad)), nil
}

// Open decrypts a ciphertext made by Seal with the key it names, checking
// that it was sealed with aad. It fails with [ErrMalformed],
// [ErrUnknownKey] or [ErrDecrypt].
func (kr *Keyring) Open(ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) < headerLen+tagSize {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrMalformed, len(ciphertext))
	}
	if v := ciphertext[0]; v != version {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrMalformed, v)
	}
	var id [idSize]byte
	copy(id[:], ciphertext[1:prefixLen])
	aead, ok := kr.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w %x", ErrUnknownKey, id)
	}
	nonce, sealed := ciphertext[prefixLen:headerLen], ciphertext[headerLen:]
	pt, err := aead.Open(nil, nonce, sealed, additionalData(ciphertext[:prefixLen], aad))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// additionalData returns the data GCM authenticates: the ciphertext's
// version and key id followed by the caller's aad.
func additionalData(prefix, aad []byte) []byte {
	ad := make([]byte, 0, len(prefix)+len(aad))
	return append(append(ad, prefix...), aad...)
}
