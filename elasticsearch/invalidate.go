package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/deputyhq/deputy"
)

// invalidateBatch is how many ids one invalidation request carries.
const invalidateBatch = 100

// invalidateResponse is the answer to DELETE /_security/api_key.
type invalidateResponse struct {
	Invalidated           []string `json:"invalidated_api_keys"`
	PreviouslyInvalidated []string `json:"previously_invalidated_api_keys"`
	ErrorCount            int      `json:"error_count"`
	ErrorDetails          []struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error_details"`
}

// Invalidate invalidates keys by id, 100 per request. A key is done when
// Elasticsearch lists it as invalidated or previously invalidated, or when
// it lists it in neither but reports no error: Elasticsearch answers so for
// ids that are unknown or already invalidated. When it reports errors, every
// id it did not confirm fails, so that nothing is dropped unless it is
// known to be invalid.
func (s *Service) Invalidate(ctx context.Context, keys []deputy.InvalidateKey) []error {
	errs := make([]error, len(keys))
	for start := 0; start < len(keys); start += invalidateBatch {
		end := min(start+invalidateBatch, len(keys))
		s.invalidate(ctx, keys[start:end], errs[start:end])
	}
	return errs
}

// invalidate invalidates one batch of keys, writing the outcome of keys[i]
// to errs[i].
func (s *Service) invalidate(ctx context.Context, keys []deputy.InvalidateKey, errs []error) {
	const op = "invalidate api keys"
	ids := make([]string, 0, len(keys))
	for i, k := range keys {
		if k.ID == "" {
			errs[i] = invalid("api key id is required")
			continue
		}
		ids = append(ids, k.ID)
	}
	if len(ids) == 0 {
		return
	}

	body, err := json.Marshal(map[string][]string{"ids": ids})
	if err != nil {
		fill(errs, fmt.Errorf("%s: encode request: %w", op, err))
		return
	}
	status, resp, err := s.do(ctx, esapi.SecurityInvalidateAPIKeyRequest{
		Body: bytes.NewReader(body),
	})
	switch {
	case err != nil:
		fill(errs, unavailable(op, err))
		return
	case transient(status):
		fill(errs, unavailable(op, s.statusError(status, resp)))
		return
	case status != http.StatusOK:
		fill(errs, fmt.Errorf("%s: %w", op, s.statusError(status, resp)))
		return
	}
	var r invalidateResponse
	if err := json.Unmarshal(resp, &r); err != nil {
		fill(errs, fmt.Errorf("%s: decode response: %w", op, err))
		return
	}
	s.settle(keys, errs, &r)
}

// settle writes the outcome of each key of a batch from Elasticsearch's
// answer.
func (s *Service) settle(keys []deputy.InvalidateKey, errs []error, r *invalidateResponse) {
	done := make(map[string]bool, len(r.Invalidated)+len(r.PreviouslyInvalidated))
	for _, id := range r.Invalidated {
		done[id] = true
	}
	for _, id := range r.PreviouslyInvalidated {
		done[id] = true
	}

	var unconfirmed []string
	for i, k := range keys {
		if errs[i] != nil || done[k.ID] {
			continue
		}
		if r.ErrorCount == 0 {
			unconfirmed = append(unconfirmed, k.ID)
			continue
		}
		errs[i] = fmt.Errorf("invalidate api key %s: not confirmed: %s", k.ID, s.detailFor(k.ID, r))
	}
	if len(unconfirmed) > 0 {
		// NB: an empty answer also hides a typo or the wrong cluster; the
		// ids are logged so that such a mistake can be traced.
		s.log.Debug("api keys unknown or already invalidated",
			slog.Int("count", len(unconfirmed)),
			slog.Any("key_ids", unconfirmed))
	}
}

// detailFor returns the error detail that names id, or a summary of the
// errors when none does.
func (s *Service) detailFor(id string, r *invalidateResponse) string {
	for _, d := range r.ErrorDetails {
		if strings.Contains(d.Reason, "["+id+"]") {
			return redact(d.Type+": "+d.Reason, s.secrets...)
		}
	}
	msg := fmt.Sprintf("elasticsearch reported %d errors", r.ErrorCount)
	if len(r.ErrorDetails) > 0 {
		d := r.ErrorDetails[0]
		msg += ", the first: " + redact(d.Type+": "+d.Reason, s.secrets...)
	}
	return msg
}

// fill sets every element of errs that is still nil to err.
func fill(errs []error, err error) {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
}
