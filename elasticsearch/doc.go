// Package elasticsearch implements deputy's Elasticsearch key service and
// authenticator on top of the official client.
//
// [Service] is the [deputy.KeyService] of kind "es": it grants an API key on
// behalf of the caller with POST /_security/api_key/grant, invalidates keys
// with DELETE /_security/api_key, and presents a key as
// "Authorization: ApiKey <base64(id:api_key)>". It is also the
// [deputy.Authenticator] of deputy's API, through GET
// /_security/_authenticate.
//
// Usage rules:
//
//   - deputy calls Elasticsearch as its own service user, configured with a
//     username and password or an API key. Granting needs the
//     grant_api_key cluster privilege; invalidating keys that belong to
//     other users needs manage_api_key (manage_own_api_key only covers the
//     service user's own keys).
//   - The caller's credential decides how a key is obtained: Basic
//     credentials are granted with grant_type password, Bearer tokens with
//     grant_type access_token, and an Elasticsearch API key is reused as it
//     is (and then never invalidated). A raw organization-level UIAM key
//     (ApiKey essu_...) cannot yield an Elasticsearch key and is refused.
//   - Requests are not retried: a repeated grant would leak a key. deputy's
//     invalidator retries invalidations itself.
//   - Credentials never reach error strings or logs: errors carry statuses
//     and Elasticsearch's reasons, with any secret known to the call
//     redacted from them.
package elasticsearch
