// Package esdev is a stand-in for Elasticsearch's security APIs, for
// development and tests only; it is not a security boundary. It keeps
// everything in memory and implements just what deputy uses, with
// Elasticsearch's paths, methods, bodies, status codes and error shapes:
//
//	GET         /_security/_authenticate
//	POST        /_security/oauth2/token          (grant_type password)
//	POST        /_security/api_key/grant         (grant_type password, access_token)
//	POST|PUT    /_security/api_key               (create)
//	DELETE      /_security/api_key               (invalidate)
//	GET         /_security/api_key               (get)
//	GET|POST    /_security/_query/api_key        (query: a subset of the DSL)
//
// Every request must authenticate with Basic credentials of a user added
// with [Server.AddUser], a Bearer access token from the token API, or an
// API key (ApiKey base64(id:api_key)). Cluster privileges come from roles:
// "superuser" holds "all", and [Server.AddRole] defines others. The
// privileges that matter are all, manage_security, manage_api_key,
// grant_api_key, manage_own_api_key, read_security and manage_token, with
// the implications Elasticsearch gives them.
//
// As Elasticsearch does in serverless projects, it accepts UIAM
// credentials (Bearer essu_ session tokens and ApiKey essu_ keys) by asking
// UIAM, at [Config.UIAMURL], who they belong to. Session tokens and internal
// UIAM keys are only accepted from a client that proves itself with the
// UIAM shared secret: the x-client-authentication header, or
// client_authentication {scheme: SharedSecret} in a grant.
//
// Simplifications: role descriptors are stored but not enforced (a key has
// its owner's privileges at grant time), refresh tokens are not issued, and
// only the query types bool, match_all, term, terms, ids, prefix and exists
// are supported.
package esdev
