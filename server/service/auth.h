// Authenticator: bearer tokens to tenants (--auth-tokens=FILE).
//
// The file has one token a line:
//
//   TOKEN TENANT [quota=SIZE] [tensors=N] [streams=N] [admin]
//
// TOKEN: 16 to 256 printable characters without spaces (use a long random
// one, e.g. `openssl rand -hex 32`); TENANT: 1 to 64 of [A-Za-z0-9_.-].
// quota is the tenant's bytes across all devices, tensors the handles it may
// hold, streams its concurrent Fetch/Put/shared-memory calls; a limit not
// given takes the server's default (--tenant-quota, --tenant-max-tensors,
// --tenant-max-streams; 0 = none). Several tokens may name one tenant (the
// limits of the last line win); `admin` lets that token call the
// server-wide Stats and EmptyCache. Blank lines and lines starting with '#'
// are ignored. Any malformed line rejects the whole file, naming the line.
//
// Clients send `authorization: Bearer TOKEN` in the call's metadata. No
// token or an unknown one: UNAUTHENTICATED (the same message for both).
// Reload() (on SIGHUP) re-reads the file: new tokens work and removed ones
// stop at once -- new calls with them are UNAUTHENTICATED, and the stream
// calls still running with them (Fetch, Put, shared-memory sessions) are
// cancelled, a Put storing nothing (Credential, LiveCall); a token that
// now names another tenant counts as removed. A tenant keeps what it holds
// (its Tenant object lives on even if no token names it any more, and
// tensors its revoked tokens stored stay its own); a file that fails to
// parse leaves the old tokens in force.
//
// Without a file, authentication is off: every caller is the default tenant
// (a null TenantPtr) with admin rights.
//
// Thread-safe.
#ifndef TENSORCAST_SERVER_SERVICE_AUTH_H_
#define TENSORCAST_SERVER_SERVICE_AUTH_H_

#include <grpcpp/server_context.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/mutex.h"
#include "server/store/tenant.h"

namespace tensorcast {

// One token's standing, shared by the calls made with it. Reload revokes
// the credential of a token it drops: the calls registered under it are
// cancelled, and none can register or commit under it again.
//
// Thread-safe. A registered cancel runs with the credential's lock held,
// so it must not call back into the credential (ServerContext::TryCancel
// does not: gRPC runs a stream reactor's reactions on its own threads,
// never inside TryCancel).
class Credential {
 public:
  Credential() = default;
  Credential(const Credential&) = delete;
  Credential& operator=(const Credential&) = delete;

  // `cancel` ends the call `key`; UNAUTHENTICATED once revoked.
  absl::Status Register(const void* key, std::function<void()> cancel);
  void Unregister(const void* key);
  // Runs `commit` unless revoked (UNAUTHENTICATED then, without running
  // it), holding a revocation off until it returns. When it succeeds `key`
  // is unregistered: the call's work is done and a revocation from now on
  // leaves it be.
  absl::Status Commit(const void* key,
                      absl::FunctionRef<absl::Status()> commit);
  // Refuses new registrations and commits from now on; the calls
  // registered run on until Revoke. Idempotent.
  void Refuse();
  // Refuse, and cancel every call registered. Idempotent.
  void Revoke();
  bool revoked() const;
  // Calls registered now (tests).
  size_t calls() const;

 private:
  mutable Mutex mu_;
  bool revoked_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<const void*, std::function<void()>> calls_
      ABSL_GUARDED_BY(mu_);
};

// What a call that ran into a revoked token ends with.
absl::Status RevokedError(absl::string_view consequence);

struct Caller {
  TenantPtr tenant;  // null: the default tenant (authentication off)
  bool admin = false;
  // The token's standing; null when authentication is off.
  std::shared_ptr<Credential> credential;
  // For logs: the tenant's name, or "-" when authentication is off.
  std::string name() const { return tenant == nullptr ? "-" : tenant->name(); }
};

struct TokenEntry {
  std::string token;
  std::string tenant;
  TenantLimits limits;
  bool admin = false;
};

// The file's text to entries; INVALID_ARGUMENT naming the first bad line.
absl::StatusOr<std::vector<TokenEntry>> ParseTokenFile(
    absl::string_view text, const TenantLimits& defaults);

// A running stream call, registered under its caller's token for as long
// as it lives, so that revoking the token cancels it (TryCancel: the client
// sees CANCELLED, the reactor's pending read or write fails). Neither
// copyable nor movable: the object is the registration's key.
class LiveCall {
 public:
  LiveCall() = default;
  LiveCall(const LiveCall&) = delete;
  LiveCall& operator=(const LiveCall&) = delete;
  ~LiveCall() { End(); }

  // UNAUTHENTICATED when the caller's token was revoked since it was
  // authenticated. A no-op without authentication.
  absl::Status Start(const Caller& caller, grpc::ServerContextBase* ctx);
  // Registers `cancel` in TryCancel's stead (tests).
  absl::Status Start(const Caller& caller, std::function<void()> cancel);
  // The call is over: a revocation no longer touches it.
  void End();
  // Whether the token was revoked (then the call was, or is being,
  // cancelled).
  bool revoked() const;
  // Credential::Commit for this call; runs `commit` as is when the call has
  // no credential.
  absl::Status Commit(absl::FunctionRef<absl::Status()> commit);

 private:
  std::shared_ptr<Credential> credential_;
};

class Authenticator {
 public:
  // path empty: authentication off. Otherwise the file must parse and name
  // at least one token.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(
      std::string path, TenantLimits defaults);

  bool enabled() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  // Re-reads the file; on error the old tokens stay. Returns the number of
  // tokens now in force.
  absl::StatusOr<int> Reload();

  // The caller of this call, from its metadata.
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContextBase& ctx) const;
  // The same from a bearer token as sent (tests, tools).
  absl::StatusOr<Caller> AuthenticateToken(absl::string_view token) const;

  // Every tenant seen since start, for server-wide Stats.
  std::vector<TenantPtr> Tenants() const;

 private:
  Authenticator(std::string path, TenantLimits defaults)
      : path_(std::move(path)), defaults_(defaults) {}

  const std::string path_;
  const TenantLimits defaults_;
  mutable Mutex mu_;
  struct Grant {
    TenantPtr tenant;
    bool admin = false;
    std::shared_ptr<Credential> credential;
  };
  absl::flat_hash_map<std::string, Grant> by_token_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, TenantPtr> tenants_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_AUTH_H_
