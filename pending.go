package deputy

import (
	"context"
	"fmt"
)

// PendingKeys lists the keys queued for invalidation, oldest first, without their secrets.
func (m *Manager) PendingKeys(ctx context.Context, limit int) ([]PendingKey, error) {
	keys, err := m.store.PendingKeys(ctx, PendingQuery{Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("list pending keys: %w", err)
	}
	for i := range keys {
		keys[i].Secret = nil
	}
	return keys, nil
}
