package deputy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
)

// grantedKey is one key granted for a call, with its secret in memory.
type grantedKey struct {
	kind          string
	id            string
	secret        Secret
	createdByUser bool
}

// grant is the keys granted for one call, by task type.
type grant struct {
	byType map[string][]grantedKey
	caller *Caller
}

// refs lists the keys deputy granted (not the caller's own), to release
// the ones no write adopted.
func (g *grant) refs() []KeyRef {
	if g == nil {
		return nil
	}
	var refs []KeyRef
	for _, keys := range g.byType {
		for _, k := range keys {
			if !k.createdByUser {
				refs = append(refs, KeyRef{Kind: k.kind, ID: k.id})
			}
		}
	}
	return refs
}

func taskAAD(t *Task, kind, keyID string) []byte {
	return []byte("deputy:task:" + t.ID + ":" + t.Type + ":" + kind + ":" + keyID)
}

func keyAAD(kind, keyID string) []byte {
	return []byte("deputy:api_key:" + kind + ":" + keyID)
}

// grantFor grants the keys of tasks scheduled by caller, one key of each
// kind per task type, and attaches them to the tasks. Without a caller or
// key services it only records who scheduled the tasks.
func (m *Manager) grantFor(ctx context.Context, tasks []*Task, caller *Caller) (*grant, error) {
	if caller == nil {
		return nil, nil
	}
	var types []string
	for _, t := range tasks {
		if !slices.Contains(types, t.Type) {
			types = append(types, t.Type)
		}
	}
	g, err := m.grantTypes(ctx, types, caller)
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		if err := m.attach(t, g); err != nil {
			m.releaseKeys(ctx, g.refs())
			return nil, err
		}
	}
	return g, nil
}

// grantTypes grants one key of each configured kind per task type. Each
// key is recorded as soon as it is granted, so that a crash before the
// task write cannot orphan it: an unadopted key is queued for invalidation
// after [Config.UnusedKeyGrace].
func (m *Manager) grantTypes(ctx context.Context, types []string, caller *Caller) (*grant, error) {
	g := &grant{byType: map[string][]grantedKey{}, caller: caller}
	if len(m.cfg.KeyServices) == 0 {
		return g, nil
	}
	if m.cfg.Cipher == nil {
		return nil, Errorf(EUNAVAILABLE,
			"cannot schedule tasks with API keys: no encryption_key is configured to store them")
	}
	for _, typ := range types {
		for _, svc := range m.cfg.KeyServices {
			k, err := m.grantOne(ctx, svc, typ, caller)
			if err != nil {
				m.releaseKeys(ctx, g.refs())
				return nil, err
			}
			if k != nil {
				g.byType[typ] = append(g.byType[typ], *k)
			}
		}
	}
	return g, nil
}

func (m *Manager) grantOne(ctx context.Context, svc KeyService, taskType string, caller *Caller) (*grantedKey, error) {
	name := fmt.Sprintf("deputy: %s - %s", taskType, caller.UserName)
	if len(name) > 256 {
		name = name[:256]
	}
	// TODO(deputy): a crash between the grant's answer and RecordKeys's
	// commit (a millisecond or so) leaves a key granted that nothing
	// records. Closing it needs an intent written first and a way to find
	// the key by it afterwards, such as its name, which the Elasticsearch
	// API can query and the UIAM API cannot.
	gk, err := svc.Grant(ctx, caller, name)
	if err != nil {
		return nil, fmt.Errorf("grant %s api key: %w", svc.Kind(), err)
	}
	if gk == nil {
		return nil, nil
	}
	k := &grantedKey{kind: svc.Kind(), id: gk.ID, secret: gk.Secret, createdByUser: gk.CreatedByUser}
	if k.createdByUser {
		return k, nil
	}
	sealed, err := m.cfg.Cipher.Seal([]byte(gk.Secret.Reveal()), keyAAD(k.kind, k.id))
	if err == nil {
		err = m.store.RecordKeys(ctx, []Key{{
			Kind: k.kind, ID: k.id, Secret: sealed, UserName: caller.UserName, GrantedAt: m.cfg.Now(),
		}})
	}
	if err != nil {
		// Unrecorded, the key would be lost: invalidate it right away.
		if errs := svc.Invalidate(ctx, []InvalidateKey{{ID: k.id, Secret: k.secret}}); errs[0] != nil {
			m.log.Error("invalidate an unrecorded api key; it must be invalidated by hand",
				slog.String("key_kind", k.kind), slog.String("api_key_id", k.id), slog.Any("error", errs[0]))
		}
		return nil, fmt.Errorf("record %s api key: %w", k.kind, err)
	}
	m.log.Debug("granted api key", slog.String("key_kind", k.kind), slog.String("api_key_id", k.id),
		slog.String("task_type", taskType))
	return k, nil
}

// attach gives t its own sealed copies of the keys granted for its type,
// and the user scope that describes them.
func (m *Manager) attach(t *Task, g *grant) error {
	us := &UserScope{SpaceID: t.SpaceID, UserName: g.caller.UserName}
	var keys []TaskKey
	for _, k := range g.byType[t.Type] {
		sealed, err := m.cfg.Cipher.Seal([]byte(k.secret.Reveal()), taskAAD(t, k.kind, k.id))
		if err != nil {
			return fmt.Errorf("encrypt api key: %w", err)
		}
		keys = append(keys, TaskKey{Kind: k.kind, ID: k.id, Secret: sealed, CreatedByUser: k.createdByUser})
		if us.KeyIDs == nil {
			us.KeyIDs = map[string]string{}
		}
		us.KeyIDs[k.kind] = k.id
		us.APIKeyCreatedByUser = us.APIKeyCreatedByUser || k.createdByUser
	}
	t.Keys, t.UserScope = keys, us
	return nil
}

// releaseKeys queues keys that no write adopted. A failure is only logged:
// the keys stay recorded and unused, so the invalidation task queues them
// after the unused-key grace.
func (m *Manager) releaseKeys(ctx context.Context, refs []KeyRef) {
	if len(refs) == 0 {
		return
	}
	if err := m.store.ReleaseKeys(context.WithoutCancel(ctx), refs, m.cfg.Now()); err != nil {
		m.log.Warn("release unused api keys; they will be queued after the grace period",
			slog.Int("count", len(refs)), slog.Any("error", err))
	}
}

// bulkRekey applies fn to tasks and gives them keys newly granted for
// caller, in one conditional write per task. The store queues the old keys
// of every task whose write landed; the new keys of the others are released
// here.
func (m *Manager) bulkRekey(ctx context.Context, ids []string, caller *Caller,
	fn func(t *Task) (bool, error),
) (*BulkResult, error) {
	if caller == nil {
		return nil, Errorf(EINVALID, "regenerate_api_key needs the caller's credentials")
	}
	current, err := m.store.GetMany(ctx, dedupe(ids))
	if err != nil {
		return nil, err
	}
	// Grant only for the types of tasks whose change is valid: a key for a
	// write known to fail would only be queued again.
	var types []string
	for _, t := range current {
		if _, err := fn(t.Clone()); err != nil || slices.Contains(types, t.Type) {
			continue
		}
		types = append(types, t.Type)
	}
	g, err := m.grantTypes(ctx, types, caller)
	if err != nil {
		return nil, err
	}
	res, err := m.bulkWrite(ctx, ids, UpdateOptions{ReplaceKeys: true}, func(t *Task) (bool, error) {
		if _, err := fn(t); err != nil {
			return false, err
		}
		if _, ok := g.byType[t.Type]; !ok && len(m.cfg.KeyServices) > 0 {
			// The type's change looked invalid before the grant but is
			// valid now (the task changed meanwhile): no key was granted.
			return false, Errorf(ECONFLICT, "task %q changed during the update; retry", t.ID)
		}
		return true, m.attach(t, g)
	})
	// Release every new key: the store keeps those some task adopted.
	m.releaseKeys(ctx, g.refs())
	return res, err
}

// requestFor builds the request a run of t presents: the key of the
// configured kind, or another kind with a warning when t lacks it.
func (m *Manager) requestFor(t *Task, log *slog.Logger) (*Request, error) {
	if len(t.Keys) == 0 {
		return nil, nil
	}
	pick := func(kind string) *TaskKey {
		for i := range t.Keys {
			if t.Keys[i].Kind == kind && m.keys[kind] != nil {
				return &t.Keys[i]
			}
		}
		return nil
	}
	k := pick(m.cfg.APIKeyType)
	if k == nil {
		for _, svc := range m.cfg.KeyServices {
			if k = pick(svc.Kind()); k != nil {
				break
			}
		}
		if k == nil {
			log.Warn("task has api keys of no configured kind; running without credentials")
			return nil, nil
		}
		log.Warn("task has no api key of the configured kind; running with another kind",
			slog.String("api_key_type", m.cfg.APIKeyType), slog.String("key_kind", k.Kind))
	}
	if m.cfg.Cipher == nil {
		return nil, Errorf(EUNAVAILABLE, "no encryption_key is configured to decrypt the task's api key")
	}
	plain, err := m.cfg.Cipher.Open(k.Secret, taskAAD(t, k.Kind, k.ID))
	if err != nil {
		return nil, fmt.Errorf("decrypt %s api key %s: %w", k.Kind, k.ID, err)
	}
	us := t.UserScope
	if us == nil {
		us = &UserScope{SpaceID: t.SpaceID}
	}
	space := us.SpaceID
	if space == "" {
		space = t.SpaceID
	}
	h := m.keys[k.Kind].Header(Secret(plain), k.CreatedByUser)
	return NewRequest(space, k.Kind, k.ID, us.UserName, h, m.credentialHost), nil
}

// credentialHost reports whether a run may present credentials to host.
func (m *Manager) credentialHost(host string) bool {
	for _, h := range m.cfg.CredentialHosts {
		if strings.EqualFold(h, host) {
			return true
		}
		if hn, _, err := net.SplitHostPort(host); err == nil && strings.EqualFold(h, hn) {
			return true
		}
	}
	return false
}
